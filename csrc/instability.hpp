// Instability counting: which (image, environment) predictions are correct, and
// which images are unstable (correct in one environment and wrong in another).
#pragma once

#include <cstdint>
#include <vector>

namespace instab::kernels {

// Per-observation outputs, each [n_images * n_envs] (row-major), plus per-image
// flags and aggregate counts. Pointers are owned by the caller.
struct InstabilityOutputs {
    uint8_t* correct = nullptr;    // [n, e] 1 when the label set meets the top-k
    uint8_t* observed = nullptr;   // [n, e] 1 when the image was seen in the env
    float* confidence = nullptr;   // [n, e] top-1 score (scores input only; may be null)
    uint8_t* unstable = nullptr;   // [n]
    uint8_t* counted = nullptr;    // [n] observed in at least two environments
    std::vector<int64_t> env_correct;   // [e]
    std::vector<int64_t> env_observed;  // [e]
    int64_t n_counted = 0, n_unstable = 0, n_always_correct = 0, n_always_wrong = 0;
};

struct LabelSets {
    const int32_t* data;  // [n, width], padded with -1
    int64_t width;
};

// ranked: [n, e, m] class indices best first; a row whose first entry is -1 is
// unobserved. n_classes < 0 disables the upper range check.
template <class Index>
void instability_ranked(const Index* ranked, int64_t n, int64_t e, int64_t m, int64_t k,
                        int64_t n_classes, LabelSets labels, InstabilityOutputs& out,
                        int threads);

// scores: [n, e, c]; a row of NaN is unobserved. Correct when the best-scored
// label ranks within the top k, ties broken towards the lower class index
// (the order of a stable descending sort), so no sort is needed.
template <class Score>
void instability_scores(const Score* scores, int64_t n, int64_t e, int64_t c, int64_t k,
                        LabelSets labels, InstabilityOutputs& out, int threads);

}  // namespace instab::kernels
