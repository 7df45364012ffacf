// Unsharp masking of uint8 images: x + amount * (x - blur(x)), blur the 3x3
// binomial filter [1 2 1]/4 x [1 2 1]/4 with edges replicated, rounded half to
// even and clipped to 0..255. Every float32 operation is the one numpy performs
// in the reference (tests/reference.py, unsharp_reference), in the same order,
// so the result is bit-identical to it.
#pragma once

#include <cstdint>

namespace instab::kernels {

// images, out: [n, h, w, c] uint8 (h, w, c >= 1); amount finite.
void unsharp(const uint8_t* images, int64_t n, int64_t h, int64_t w, int64_t c, float amount, uint8_t* out,
             int threads);

}  // namespace instab::kernels
