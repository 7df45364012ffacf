#include "topk.hpp"

#include "parallel.hpp"

namespace instab::kernels {

template <class Score>
void topk(const Score* scores, int64_t rows, int64_t c, int64_t k, int64_t* indices,
          Score* values, int threads) {
    parallel_for(rows, threads, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
            const Score* row = scores + r * c;
            int64_t* idx = indices + r * k;
            Score* val = values + r * k;
            int64_t filled = 0;
            // Insertion into a sorted buffer of k: cheap for the small k of top-k.
            // "a beats b" = a > b, or b is NaN and a is not.
            for (int64_t q = 0; q < c; ++q) {
                const Score v = row[q];
                if (filled == k) {
                    const Score last = val[k - 1];
                    const bool beats = (v > last) || (last != last && v == v);
                    if (!beats) continue;
                }
                int64_t pos = filled < k ? filled : k - 1;
                while (pos > 0) {
                    const Score prev = val[pos - 1];
                    const bool beats = (v > prev) || (prev != prev && v == v);
                    if (!beats) break;
                    val[pos] = prev;
                    idx[pos] = idx[pos - 1];
                    --pos;
                }
                val[pos] = v;
                idx[pos] = q;
                if (filled < k) ++filled;
            }
        }
    });
}

template void topk<float>(const float*, int64_t, int64_t, int64_t, int64_t*, float*, int);
template void topk<double>(const double*, int64_t, int64_t, int64_t, int64_t*, double*, int);

}  // namespace instab::kernels
