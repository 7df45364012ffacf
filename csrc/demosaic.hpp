// Demosaicing alone, in integers: a Bayer mosaic (uint8 or uint16) to RGB.
//
// Every output value is an exact rational num / den (den = 4 for bilinear, 16
// for Malvar-He-Cutler, 32 for Hamilton-Adams) of the input's integers; integer
// output rounds it half up, floor((num + den / 2) / den), and clips to the
// dtype's range; float32 output is num / den rounded once to float32. Borders
// mirror without repeating the edge (reflect-101), as in develop. The exact
// formulas are those of tests/reference.py (demosaic_reference).
#pragma once

#include <cstdint>

#include "isp.hpp"

namespace instab::kernels {

// mosaic: [n, h, w]; cfa as in isp.hpp; exactly one of out_int ([n, h, w, 3],
// same type as the mosaic) and out_float ([n, h, w, 3]) is non-null.
// h and w must be at least 2.
template <class T>
void demosaic(const T* mosaic, int64_t n, int64_t h, int64_t w, const int cfa[4], Demosaic method, T* out_int,
              float* out_float, int threads);

}  // namespace instab::kernels
