// Partial top-k selection over the last axis, without a full sort.
#pragma once

#include <cstdint>

namespace instab::kernels {

// scores: [rows, c]. Writes the k best class indices (best first) and their
// scores. Ties go to the lower class index, as a stable descending sort would.
// NaN scores rank below every number.
template <class Score>
void topk(const Score* scores, int64_t rows, int64_t c, int64_t k, int64_t* indices,
          Score* values, int threads);

}  // namespace instab::kernels
