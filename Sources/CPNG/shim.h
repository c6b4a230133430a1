// libpng through its stable public header (libpng-dev on Debian, libpng on Homebrew).
#include <png.h>
