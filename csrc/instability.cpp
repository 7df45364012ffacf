#include "instability.hpp"

#include <cmath>
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

void finish_image(int64_t i, int64_t e, InstabilityOutputs& out, Tally& t) {
    int64_t n_obs = 0, n_ok = 0;
    for (int64_t j = 0; j < e; ++j) {
        const int64_t o = i * e + j;
        if (out.observed[o]) {
            ++n_obs;
            n_ok += out.correct[o];
            ++t.env_observed[j];
            t.env_correct[j] += out.correct[o];
        }
    }
    const bool counted = n_obs >= 2;
    const bool unstable = counted && n_ok > 0 && n_ok < n_obs;
    out.counted[i] = counted;
    out.unstable[i] = unstable;
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
        for (int64_t i = begin; i < end; ++i) {
            body(i);
            finish_image(i, e, out, t);
        }
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

}  // namespace

template <class Index>
void instability_ranked(const Index* ranked, int64_t n, int64_t e, int64_t m, int64_t k,
                        int64_t n_classes, LabelSets labels, InstabilityOutputs& out,
                        int threads) {
    run_images(n, e, out, threads, [&](int64_t i) {
        const int32_t* lab = labels.data + i * labels.width;
        for (int64_t j = 0; j < e; ++j) {
            const Index* row = ranked + (i * e + j) * m;
            const int64_t o = i * e + j;
            for (int64_t t = 0; t < m; ++t) {
                const int64_t v = static_cast<int64_t>(row[t]);
                if (v < -1 || (n_classes >= 0 && v >= n_classes)) {
                    throw std::invalid_argument(
                        "predictions: class index " + std::to_string(v) + " at " + where(i, j) +
                        " is out of range (expected -1 or 0.." +
                        (n_classes >= 0 ? std::to_string(n_classes - 1) : std::string("n_classes-1")) + ")");
                }
            }
            if (row[0] < 0) {
                out.observed[o] = 0;
                out.correct[o] = 0;
                continue;
            }
            bool hit = false;
            for (int64_t t = 0; t < k; ++t) {
                const int64_t v = static_cast<int64_t>(row[t]);
                if (v < 0) {
                    throw std::invalid_argument("predictions: row " + where(i, j) +
                                                " is observed but has -1 within the top k");
                }
                for (int64_t l = 0; l < labels.width; ++l) hit |= (lab[l] == v);
            }
            out.observed[o] = 1;
            out.correct[o] = hit;
        }
    });
}

template <class Score>
void instability_scores(const Score* scores, int64_t n, int64_t e, int64_t c, int64_t k,
                        LabelSets labels, InstabilityOutputs& out, int threads) {
    run_images(n, e, out, threads, [&](int64_t i) {
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
                out.observed[o] = 0;
                out.correct[o] = 0;
                if (out.confidence) out.confidence[o] = std::nanf("");
                continue;
            }
            if (nans != 0) {
                throw std::invalid_argument("predictions: scores row " + where(i, j) + " has " +
                                            std::to_string(nans) +
                                            " NaN values; a row must be all NaN (not observed) or have none");
            }
            out.observed[o] = 1;
            out.correct[o] = ahead < k;
            if (out.confidence) out.confidence[o] = static_cast<float>(top);
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
