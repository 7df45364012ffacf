#include "sharpen.hpp"

#include <algorithm>
#include <vector>

#include "parallel.hpp"

namespace instab::kernels {
namespace {

// The horizontal pass of one row of len = w * c values: (left + 2 * centre +
// right) / 4 per channel, edges replicated. Exact: the sums are integers below 2^24.
void horizontal(const uint8_t* row, int64_t w, int64_t c, float* out) {
    const int64_t len = w * c;
    auto tap = [&](int64_t j, int64_t l, int64_t r) {
        out[j] = (static_cast<float>(row[l]) + 2.f * static_cast<float>(row[j]) + static_cast<float>(row[r])) / 4.f;
    };
    if (w == 1) {
        for (int64_t j = 0; j < c; ++j) tap(j, j, j);
        return;
    }
    for (int64_t j = 0; j < c; ++j) tap(j, j, j + c);
    for (int64_t j = c; j < len - c; ++j) {  // the interior, one unit-stride loop (vectorised)
        out[j] = (static_cast<float>(row[j - c]) + 2.f * static_cast<float>(row[j]) + static_cast<float>(row[j + c])) /
                 4.f;
    }
    for (int64_t j = len - c; j < len; ++j) tap(j, j - c, j);
}

// Horizontal passes of one image's rows, kept for the three output rows that use
// each (a ring of 4 keyed by row index).
class HorizontalRows {
public:
    HorizontalRows(int64_t w, int64_t c) : w_(w), c_(c), buf_(static_cast<size_t>(4 * w * c)) { clear(); }

    void clear() {
        for (auto& t : tag_) t = -1;
    }

    const float* row(const uint8_t* image, int64_t r) {
        const int slot = static_cast<int>(r & 3);
        float* dst = buf_.data() + slot * w_ * c_;
        if (tag_[slot] != r) {
            horizontal(image + r * w_ * c_, w_, c_, dst);
            tag_[slot] = r;
        }
        return dst;
    }

private:
    int64_t w_, c_;
    std::vector<float> buf_;
    int64_t tag_[4];
};

// One output row from its pixels and the horizontal passes of the rows above,
// at and below. Arguments by value and restrict pointers, so that the loop
// vectorises (uint8 stores may alias anything).
void finish_row(const uint8_t* __restrict src, const float* __restrict up, const float* __restrict mid,
                const float* __restrict down, int64_t len, float amount, uint8_t* __restrict dst) {
    for (int64_t j = 0; j < len; ++j) {
        const float x = static_cast<float>(src[j]);
        const float blur = (up[j] + 2.f * mid[j] + down[j]) / 4.f;
        const float detail = amount * (x - blur);  // rounded, then added: no fused multiply-add
        // Clamped first (rounding then clipping gives the same 0..255), so that adding
        // and removing 1.5 * 2^23 rounds half to even, as numpy's rint: exact for |v| < 2^22.
        const float v = std::min(std::max(x + detail, -1.f), 256.f);
        const float r = (v + 12582912.f) - 12582912.f;
        dst[j] = static_cast<uint8_t>(static_cast<int32_t>(std::min(std::max(r, 0.f), 255.f)));
    }
}

}  // namespace

void unsharp(const uint8_t* images, int64_t n, int64_t h, int64_t w, int64_t c, float amount, uint8_t* out,
             int threads) {
    const int64_t len = w * c;
    parallel_chunks(n * h, threads, [&](int, int64_t b, int64_t e) {
        HorizontalRows rows(w, c);
        int64_t current = -1;
        for (int64_t row = b; row < e; ++row) {
            const int64_t i = row / h, y = row % h;
            const uint8_t* img = images + i * h * len;
            if (i != current) {
                rows.clear();
                current = i;
            }
            const float* up = rows.row(img, std::max<int64_t>(y - 1, 0));
            const float* mid = rows.row(img, y);
            const float* down = rows.row(img, std::min<int64_t>(y + 1, h - 1));
            finish_row(img + y * len, up, mid, down, len, amount, out + row * len);
        }
    });
}

}  // namespace instab::kernels
