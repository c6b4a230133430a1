// libjpeg-turbo's classic API. jpeglib.h needs stdio.h (FILE, size_t) before it.
#include <stdio.h>
#include <stdlib.h>
#include <jpeglib.h>
#include <setjmp.h>
