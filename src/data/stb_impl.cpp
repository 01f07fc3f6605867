// The one translation unit that compiles stb's codecs. Only the formats the data pipeline needs, and
// no stdio in the decoder: files are read by isrn::io so that errors name the file the same way.
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#define STBI_FAILURE_USERMSG
// Decoder state starts zeroed: a corrupt JPEG can use a Huffman table no segment defined, and reading it
// uninitialized made the outcome depend on what the allocator returned (found by fuzzing, fuzz/README.md).
#include <cstdlib>
#define STBI_MALLOC(size) std::calloc(1, size)
#define STBI_REALLOC(pointer, size) std::realloc(pointer, size)
#define STBI_FREE(pointer) std::free(pointer)
// stb asserts conditions that corrupt files break (the Huffman decoder's table invariant, for one); a Release
// build drops them anyway, and a Debug build must not abort on a bad image either. The checks that guard memory
// are the ones cmake/StbImageHardening.cmake adds.
#define STBI_ASSERT(condition) ((void)0)
// With STBI_FAILURE_USERMSG the PNG decoder fills a message buffer it then does not use.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#include <stb/stb_image_write.h>
