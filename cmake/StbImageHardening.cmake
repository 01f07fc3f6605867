# stb_image as Debian bookworm ships it (libstb-dev 0.0~git20220908, stb_image v2.27) misbehaves on crafted
# files. isrn decodes images it did not make (datasets, users' files), so the library compiles a copy of the
# header with the checks below added; each was found by isrn's fuzzing (fuzz/README.md), and the input that found
# it is kept in fuzz/corpus/image, so the sanitizer replay in CI keeps it fixed. A header whose passage reads
# otherwise (a later stb, fixed upstream) is used as it is for that passage.
#
# isrn_harden_stb_image(<stb include dir> <output dir>) writes <output dir>/stb/stb_image.h.

# Replaces `before` by `after` in the variable named `text_var` and appends `name` to `applied_var`.
function(_isrn_stb_add_check text_var applied_var name before after)
  string(FIND "${${text_var}}" "${before}" at)
  if(at GREATER_EQUAL 0)
    string(REPLACE "${before}" "${after}" patched "${${text_var}}")
    set(${text_var} "${patched}" PARENT_SCOPE)
    set(${applied_var} ${${applied_var}} "${name}" PARENT_SCOPE)
  endif()
endfunction()

function(isrn_harden_stb_image include_dir out_dir)
  file(READ "${include_dir}/stb/stb_image.h" text)
  set(applied "")

  # A JPEG Huffman table (DHT) declares 16 code counts, up to 255 each, and the decoder stores that many code
  # sizes and values in 257- and 256-entry arrays: more than 256 codes in all writes past both.
  _isrn_stb_add_check(text applied "JPEG DHT code count" [=[
            for (i=0; i < 16; ++i) {
               sizes[i] = stbi__get8(z->s);
               n += sizes[i];
            }
            L -= 17;]=] [=[
            for (i=0; i < 16; ++i) {
               sizes[i] = stbi__get8(z->s);
               n += sizes[i];
            }
            if (n > 256) return stbi__err("bad DHT header","Corrupt JPEG"); /* isrn: at most 256 codes */
            L -= 17;]=])

  # An empty first PNG IDAT chunk reads zero bytes into a buffer not yet allocated: memcpy with a null
  # destination, undefined even for zero bytes.
  _isrn_stb_add_check(text applied "zero-length read" [=[
static int stbi__getn(stbi__context *s, stbi_uc *buffer, int n)
{
   if (s->io.read) {]=] [=[
static int stbi__getn(stbi__context *s, stbi_uc *buffer, int n)
{
   if (n == 0) return 1; /* isrn: nothing to copy, and buffer may still be null */
   if (s->io.read) {]=])

  # A Huffman code whose symbol index falls outside the table (inconsistent code counts) indexes the 256
  # symbol values with it, negative indices included.
  _isrn_stb_add_check(text applied "JPEG Huffman symbol index" [=[
   c = ((j->code_buffer >> (32 - k)) & stbi__bmask[k]) + h->delta[k];
]=] [=[
   c = ((j->code_buffer >> (32 - k)) & stbi__bmask[k]) + h->delta[k];
   if (c < 0 || c >= 256) return -1; /* isrn: a code outside the table is a corrupt file */
]=])

  # The bit reader stops short at a marker, so the fast AC path (baseline and progressive) can take more bits
  # than the buffer holds: the bit count goes negative and the next refill shifts by 33 or more.
  _isrn_stb_add_check(text applied "JPEG fast AC bit count" [=[
s = r & 15; // combined length
]=] [=[
s = r & 15; // combined length
         if (s > j->code_bits) return stbi__err("bad huffman code","Corrupt JPEG"); /* isrn: fewer bits than the code */
]=])

  file(WRITE "${out_dir}/stb/stb_image.h.new" "${text}")
  file(COPY_FILE "${out_dir}/stb/stb_image.h.new" "${out_dir}/stb/stb_image.h" ONLY_IF_DIFFERENT)
  file(REMOVE "${out_dir}/stb/stb_image.h.new")
  list(LENGTH applied count)
  list(JOIN applied ", " names)
  message(STATUS "isrn: stb_image from ${include_dir}: ${count} checks added (${names})")
endfunction()
