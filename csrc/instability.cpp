#include "instability.hpp"

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "parallel.hpp"

namespace instab::kernels {
namespace {

// Per-thread tallies, summed after the parallel loop (integer sums, so the
// result does not depend on how images were split between threads).
struct Tally {
    std::vector<int64_t> env_correct, env_observed;
    int64_t counted = 0, unstable = 0, always_correct = 0, always_wrong = 0;
    explicit Tally(int64_t e) : env_correct(e, 0), env_observed(e, 0) {}
};

// Per-image summary from that image's row of correct/observed flags.
// Pointers are passed by value: uint8_t stores may alias anything, so reading
// them through the output struct would force reloads in the hot loop.
inline void finish_image(int64_t i, int64_t e, const uint8_t* correct, const uint8_t* observed,
                         uint8_t* unstable_out, uint8_t* counted_out, int64_t* env_correct,
                         int64_t* env_observed, Tally& t) {
    int64_t n_obs = 0, n_ok = 0;
    const uint8_t* c = correct + i * e;
    const uint8_t* ob = observed + i * e;
    for (int64_t j = 0; j < e; ++j) {
        n_obs += ob[j];
        n_ok += c[j];  // correct implies observed
        env_observed[j] += ob[j];
        env_correct[j] += c[j];
    }
    const bool counted = n_obs >= 2;
    const bool unstable = counted && n_ok > 0 && n_ok < n_obs;
    counted_out[i] = counted;
    unstable_out[i] = unstable;
    if (counted) {
        ++t.counted;
        t.unstable += unstable;
        t.always_correct += (n_ok == n_obs);
        t.always_wrong += (n_ok == 0);
    }
}

template <class Body>
void run_images(int64_t n, int64_t e, InstabilityOutputs& out, int threads, Body&& body) {
    std::vector<Tally> tallies(static_cast<size_t>(chunk_count(n, threads)), Tally(e));
    parallel_chunks(n, threads, [&](int chunk, int64_t begin, int64_t end) {
        Tally& t = tallies[static_cast<size_t>(chunk)];
        std::vector<int64_t> env_correct(static_cast<size_t>(e), 0), env_observed(static_cast<size_t>(e), 0);
        uint8_t* const correct = out.correct;
        uint8_t* const observed = out.observed;
        uint8_t* const unstable = out.unstable;
        uint8_t* const counted = out.counted;
        for (int64_t i = begin; i < end; ++i) {
            body(i, correct + i * e, observed + i * e);
            finish_image(i, e, correct, observed, unstable, counted, env_correct.data(), env_observed.data(), t);
        }
        t.env_correct = std::move(env_correct);
        t.env_observed = std::move(env_observed);
    });
    out.env_correct.assign(static_cast<size_t>(e), 0);
    out.env_observed.assign(static_cast<size_t>(e), 0);
    out.n_counted = out.n_unstable = out.n_always_correct = out.n_always_wrong = 0;
    for (const Tally& t : tallies) {
        for (int64_t j = 0; j < e; ++j) {
            out.env_correct[j] += t.env_correct[j];
            out.env_observed[j] += t.env_observed[j];
        }
        out.n_counted += t.counted;
        out.n_unstable += t.unstable;
        out.n_always_correct += t.always_correct;
        out.n_always_wrong += t.always_wrong;
    }
}

std::string where(int64_t i, int64_t j) {
    return "[" + std::to_string(i) + ", " + std::to_string(j) + "]";
}

template <class Index>
std::string range_message(const Index* row, int64_t m, int64_t upper, int64_t n_classes, int64_t i,
                          int64_t j) {
    int64_t v = 0;
    bool found = false;
    for (int64_t t = 0; t < m && !found; ++t) {
        v = static_cast<int64_t>(row[t]);
        found = v < -1 || v >= upper;
    }
    if (!found) return std::string();
    return "predictions: class index " + std::to_string(v) + " at " + where(i, j) +
           " is out of range (expected -1 or 0.." +
           (n_classes >= 0 ? std::to_string(n_classes - 1) : std::string("n_classes-1")) + ")";
}

}  // namespace

// Whether any of the first k entries of row is in the label set; flags -1 holes.
template <class Index, int Width>
inline bool row_hit(const Index* row, int64_t k, const int32_t* lab, int64_t width, bool& hole) {
    bool hit = false;
    for (int64_t t = 0; t < k; ++t) {
        const int64_t v = static_cast<int64_t>(row[t]);
        hole |= v < 0;
        if constexpr (Width == 1) {
            hit |= (lab[0] == v);
        } else {
            for (int64_t l = 0; l < width; ++l) hit |= (lab[l] == v);
        }
    }
    return hit;
}

template <class Index, int Width>
void ranked_impl(const Index* ranked, int64_t n, int64_t e, int64_t m, int64_t k, int64_t n_classes,
                 LabelSets labels, InstabilityOutputs& out, int threads) {
    const int64_t upper = n_classes >= 0 ? n_classes : INT64_MAX;
    const int64_t width = labels.width;
    run_images(n, e, out, threads, [=](int64_t i, uint8_t* correct, uint8_t* observed) {
        const int32_t* lab = labels.data + i * width;
        const Index* block = ranked + i * e * m;
        // Branch-free range check over the image's whole block (vectorizes);
        // the message is built only on failure.
        bool bad = false;
        for (int64_t t = 0; t < e * m; ++t) {
            const int64_t v = static_cast<int64_t>(block[t]);
            bad |= (v < -1) | (v >= upper);
        }
        if (bad) {
            for (int64_t j = 0; j < e; ++j) {
                const std::string msg = range_message(block + j * m, m, upper, n_classes, i, j);
                if (!msg.empty()) throw std::invalid_argument(msg);
            }
        }
        bool hole_error = false;
        for (int64_t j = 0; j < e; ++j) {
            const Index* row = block + j * m;
            bool hole = false;
            const bool hit = row_hit<Index, Width>(row, k, lab, width, hole);
            const bool seen = row[0] >= 0;
            hole_error |= seen & hole;
            observed[j] = seen;
            correct[j] = seen & hit;
        }
        if (hole_error) {  // rare: find the row only to name it
            for (int64_t j = 0; j < e; ++j) {
                bool hole = false;
                row_hit<Index, Width>(block + j * m, k, lab, width, hole);
                if (block[j * m] >= 0 && hole) {
                    throw std::invalid_argument("predictions: row " + where(i, j) +
                                                " is observed but has -1 within the top k");
                }
            }
        }
    });
}

template <class Index>
void instability_ranked(const Index* ranked, int64_t n, int64_t e, int64_t m, int64_t k,
                        int64_t n_classes, LabelSets labels, InstabilityOutputs& out,
                        int threads) {
    if (labels.width == 1) {
        ranked_impl<Index, 1>(ranked, n, e, m, k, n_classes, labels, out, threads);
    } else {
        ranked_impl<Index, 0>(ranked, n, e, m, k, n_classes, labels, out, threads);
    }
}

template <class Score>
void instability_scores(const Score* scores, int64_t n, int64_t e, int64_t c, int64_t k,
                        LabelSets labels, InstabilityOutputs& out, int threads) {
    float* const confidence = out.confidence;
    run_images(n, e, out, threads, [=](int64_t i, uint8_t* correct, uint8_t* observed) {
        const int32_t* lab = labels.data + i * labels.width;
        for (int64_t j = 0; j < e; ++j) {
            const Score* row = scores + (i * e + j) * c;
            const int64_t o = i * e + j;
            // The best-scored label decides: any label in the top k <=> it is.
            int64_t best = -1;
            Score best_score = 0;
            for (int64_t l = 0; l < labels.width; ++l) {
                const int64_t y = lab[l];
                if (y < 0) continue;
                const Score s = row[y];
                if (best < 0 || s > best_score || (s == best_score && y < best)) {
                    best = y;
                    best_score = s;
                }
            }
            if (best < 0) {
                throw std::invalid_argument("labels: image " + std::to_string(i) + " has an empty label set");
            }
            // One branch-free pass: rank of the best label, maximum, NaN count.
            int64_t ahead = 0, nans = 0;
            Score top = row[0];
            for (int64_t q = 0; q < c; ++q) {
                const Score v = row[q];
                ahead += (v > best_score) | ((v == best_score) & (q < best));
                top = v > top ? v : top;
                nans += (v != v);
            }
            if (nans == c) {
                observed[j] = 0;
                correct[j] = 0;
                if (confidence) confidence[o] = std::nanf("");
                continue;
            }
            if (nans != 0) {
                throw std::invalid_argument("predictions: scores row " + where(i, j) + " has " +
                                            std::to_string(nans) +
                                            " NaN values; a row must be all NaN (not observed) or have none");
            }
            observed[j] = 1;
            correct[j] = ahead < k;
            if (confidence) confidence[o] = static_cast<float>(top);
        }
    });
}

template void instability_ranked<int32_t>(const int32_t*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                          LabelSets, InstabilityOutputs&, int);
template void instability_ranked<int64_t>(const int64_t*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                          LabelSets, InstabilityOutputs&, int);
template void instability_scores<float>(const float*, int64_t, int64_t, int64_t, int64_t, LabelSets,
                                        InstabilityOutputs&, int);
template void instability_scores<double>(const double*, int64_t, int64_t, int64_t, int64_t, LabelSets,
                                         InstabilityOutputs&, int);

}  // namespace instab::kernels
