// Classifier preprocessing: resize (Pillow-exact bilinear with antialiasing),
// centre crop, scaling and layout into one batch tensor.
//
// The resize reproduces Pillow's Image.resize(..., BILINEAR) bit for bit: a
// triangle filter whose support grows with the downscale factor, coefficients
// normalised to sum 1 and quantised to 22-bit fixed point, a horizontal pass
// rounded to uint8, then a vertical pass rounded to uint8. Only the pixels that
// survive the centre crop are computed.
#pragma once

#include <cstdint>
#include <vector>

namespace instab::kernels {

// One input image: `channels` interleaved uint8 samples per pixel (1 = grey,
// 3 = RGB, 4 = RGBA whose alpha is ignored), rows `row_stride` bytes apart.
struct ImageView {
    const uint8_t* data = nullptr;
    int64_t height = 0, width = 0, channels = 0, row_stride = 0;
};

// Fixed-point filter weights for resizing one axis from in_size to out_size,
// restricted to the output positions [out_begin, out_end) that the crop keeps.
struct AxisCoeffs {
    int64_t in_size = 0, out_size = 0;
    int64_t out_begin = 0, out_end = 0;  // output positions held here
    int64_t in_begin = 0, in_end = 0;    // input positions they read
    int ksize = 0;                       // stride of `weights`
    std::vector<int32_t> first;          // per output: first input position
    std::vector<int32_t> count;          // per output: number of taps
    std::vector<int32_t> weights;        // per output: ksize weights, 22-bit fixed point
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter.
AxisCoeffs bilinear_coeffs(int64_t in_size, int64_t out_size, int64_t out_begin, int64_t out_end);

// Where one image goes: the resized size and the crop window's top-left corner
// in resized coordinates (negative or overhanging windows are zero-padded).
struct ResizePlan {
    int64_t resized_h = 0, resized_w = 0, top = 0, left = 0;
};

// The shorter side becomes `short_side`, the longer int(short_side * long / short)
// (torchvision's rule); the crop offsets are round((resized - crop) / 2), ties to even.
ResizePlan plan_resize(int64_t height, int64_t width, int64_t short_side, int64_t out_h, int64_t out_w);

struct PreprocessParams {
    int64_t out_h = 0, out_w = 0;  // crop size
    int64_t short_side = 0;        // resized shorter side
    bool nchw = false;             // output layout; otherwise NHWC
    const float* lut = nullptr;    // float output: [3][256] value of each level per channel
};

// out: [n, out_h, out_w, 3] or [n, 3, out_h, out_w] contiguous. Throws
// std::invalid_argument on bad shapes. Identical results for any thread count.
void preprocess_u8(const ImageView* images, int64_t n, const PreprocessParams& params, uint8_t* out,
                   int threads);
void preprocess_f32(const ImageView* images, int64_t n, const PreprocessParams& params, float* out,
                    int threads);

}  // namespace instab::kernels
