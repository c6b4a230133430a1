// zlib through its stable public header (zlib1g-dev on Debian, part of the SDK on macOS).
#include <zlib.h>
