#include "instability.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

// Per-image row sums of that image's correct/observed flags, also added to the
// per-environment tallies. Pointers are passed by value: uint8_t stores may
// alias anything, so reading them through the output struct would force
// reloads in the hot loop.
struct RowCounts {
    int64_t observed = 0, correct = 0;
};

inline RowCounts count_row(int64_t e, const uint8_t* c, const uint8_t* ob, int64_t* env_correct,
                           int64_t* env_observed) {
    RowCounts r;
    for (int64_t j = 0; j < e; ++j) {
        r.observed += ob[j];
        r.correct += c[j];  // correct implies observed
        env_observed[j] += ob[j];
        env_correct[j] += c[j];
    }
    return r;
}

// The image's flags and its share of the aggregate counts.
inline void finish_image(int64_t i, RowCounts r, uint8_t* unstable_out, uint8_t* counted_out, Tally& t) {
    const int64_t n_obs = r.observed, n_ok = r.correct;
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

// body(i, correct_row, observed_row, env_correct, env_observed) fills image i's
// rows, adds them to the per-environment tallies and returns their sums.
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
            const RowCounts r = body(i, correct + i * e, observed + i * e, env_correct.data(), env_observed.data());
            finish_image(i, r, unstable, counted, t);
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

// Throws the range error of image i's first bad row (called only once the
// branch-free check has seen one).
template <class Index>
void throw_range(const Index* block, int64_t i, int64_t e, int64_t m, int64_t upper, int64_t n_classes) {
    for (int64_t j = 0; j < e; ++j) {
        const std::string msg = range_message(block + j * m, m, upper, n_classes, i, j);
        if (!msg.empty()) throw std::invalid_argument(msg);
    }
}

// Throws the error of image i's first observed row with -1 in its top k.
template <class Index>
void throw_hole(const Index* block, int64_t i, int64_t e, int64_t m, int64_t k) {
    for (int64_t j = 0; j < e; ++j) {
        bool hole = false;
        for (int64_t t = 0; t < k; ++t) hole |= block[j * m + t] < 0;
        if (block[j * m] >= 0 && hole) {
            throw std::invalid_argument("predictions: row " + where(i, j) + " is observed but has -1 within the top k");
        }
    }
}

template <class Index, int Width>
void ranked_impl(const Index* ranked, int64_t n, int64_t e, int64_t m, int64_t k, int64_t n_classes,
                 LabelSets labels, InstabilityOutputs& out, int threads) {
    const int64_t upper = n_classes >= 0 ? n_classes : INT64_MAX;
    const int64_t width = labels.width;
    run_images(n, e, out, threads,
               [=](int64_t i, uint8_t* correct, uint8_t* observed, int64_t* env_correct, int64_t* env_observed) {
        const int32_t* lab = labels.data + i * width;
        const Index* block = ranked + i * e * m;
        // Branch-free range check over the image's whole block (vectorizes);
        // the message is built only on failure.
        bool bad = false;
        for (int64_t t = 0; t < e * m; ++t) {
            const int64_t v = static_cast<int64_t>(block[t]);
            bad |= (v < -1) | (v >= upper);
        }
        if (bad) throw_range(block, i, e, m, upper, n_classes);
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
        if (hole_error) throw_hole(block, i, e, m, k);  // rare: find the row only to name it
        return count_row(e, correct, observed, env_correct, env_observed);
    });
}

#if defined(__SSE2__)
// ---- The SSE2 path (every x86-64): an image's e * m predictions, 16 at a time,
// become two bit masks (entry is a label; entry is negative) and one "out of
// range" vector; each row then reads its k bits from the masks. Only the bits
// of one image are kept, so every prediction is read once, from memory, in order.

// Per-dtype lanes: 16 entries as int16 (two vectors) or int32 (four), packed with
// signed saturation, which keeps the sign and maps -1/0 compare results to -1/0.
template <class Index>
struct Lanes16;

template <>
struct Lanes16<int16_t> {
    static __m128i set1(int64_t v) { return _mm_set1_epi16(static_cast<int16_t>(v)); }
    // Bit t of eq: entry t equals a label; of neg: entry t < 0. bad |= out-of-range lanes.
    template <int Width>
    static void masks(const int16_t* p, const __m128i* lab, int64_t width, __m128i lo, __m128i hi, __m128i& bad,
                      uint32_t& eq, uint32_t& neg) {
        const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const __m128i v1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8));
        __m128i e0 = _mm_cmpeq_epi16(v0, lab[0]), e1 = _mm_cmpeq_epi16(v1, lab[0]);
        if constexpr (Width != 1) {
            for (int64_t l = 1; l < width; ++l) {
                e0 = _mm_or_si128(e0, _mm_cmpeq_epi16(v0, lab[l]));
                e1 = _mm_or_si128(e1, _mm_cmpeq_epi16(v1, lab[l]));
            }
        }
        bad = _mm_or_si128(bad, _mm_or_si128(_mm_cmpgt_epi16(lo, v0), _mm_cmpgt_epi16(v0, hi)));
        bad = _mm_or_si128(bad, _mm_or_si128(_mm_cmpgt_epi16(lo, v1), _mm_cmpgt_epi16(v1, hi)));
        eq = static_cast<uint32_t>(_mm_movemask_epi8(_mm_packs_epi16(e0, e1)));
        neg = static_cast<uint32_t>(_mm_movemask_epi8(_mm_packs_epi16(v0, v1)));
    }
};

template <>
struct Lanes16<int32_t> {
    static __m128i set1(int64_t v) { return _mm_set1_epi32(static_cast<int32_t>(v)); }
    template <int Width>
    static void masks(const int32_t* p, const __m128i* lab, int64_t width, __m128i lo, __m128i hi, __m128i& bad,
                      uint32_t& eq, uint32_t& neg) {
        __m128i v[4], e[4];
        for (int q = 0; q < 4; ++q) {
            v[q] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 4 * q));
            e[q] = _mm_cmpeq_epi32(v[q], lab[0]);
            if constexpr (Width != 1) {
                for (int64_t l = 1; l < width; ++l) e[q] = _mm_or_si128(e[q], _mm_cmpeq_epi32(v[q], lab[l]));
            }
            bad = _mm_or_si128(bad, _mm_or_si128(_mm_cmpgt_epi32(lo, v[q]), _mm_cmpgt_epi32(v[q], hi)));
        }
        const __m128i e8 = _mm_packs_epi16(_mm_packs_epi32(e[0], e[1]), _mm_packs_epi32(e[2], e[3]));
        const __m128i v8 = _mm_packs_epi16(_mm_packs_epi32(v[0], v[1]), _mm_packs_epi32(v[2], v[3]));
        eq = static_cast<uint32_t>(_mm_movemask_epi8(e8));
        neg = static_cast<uint32_t>(_mm_movemask_epi8(v8));
    }
};

// The fast path keeps one image's masks on the stack: up to this many entries.
constexpr int64_t kSimdMaxEntries = 4096;

__extension__ typedef unsigned __int128 Bits128;  // GCC/Clang, as is the SSE2 path

// Shifts that OR each bit's window of k bits into it by doubling (k = 5: 1, 2, 1).
struct Window {
    int steps[8];
    int count = 0;
    explicit Window(int64_t k) {
        int64_t len = 1;
        for (; 2 * len <= k; len *= 2) steps[count++] = static_cast<int>(len);
        if (len < k) steps[count++] = static_cast<int>(k - len);
    }
    // Bit p of the result: any of bits p .. p + k - 1 of hi:lo (p < 64).
    uint64_t any(uint64_t lo, uint64_t hi) const {
        Bits128 v = (static_cast<Bits128>(hi) << 64) | lo;
        for (int s = 0; s < count; ++s) v |= v >> steps[s];
        return static_cast<uint64_t>(v);
    }
};

// Each row's flags from the image's masks (eq: entry is a label; neg: entry is
// negative), word by word: a row starts at a bit of `start`, is seen when that
// entry is not negative, correct when a label is within its first k entries,
// and an error when a -1 is. Then one byte per row, added to the per-environment
// tallies. Arguments by value, so that the byte stores (which may alias
// anything) force no reloads.
inline RowCounts rows_from_masks(int64_t e, int64_t m, int64_t total, const Window& win, const uint64_t* start,
                                 const uint64_t* eqw, const uint64_t* negw, uint8_t* correct, uint8_t* observed,
                                 int64_t* env_correct, int64_t* env_observed, uint64_t& hole_error) {
    uint64_t seenw[kSimdMaxEntries / 64], okw[kSimdMaxEntries / 64];
    uint64_t holes = 0;
    const int64_t used = (total + 63) / 64;
    for (int64_t q = 0; q < used; ++q) {
        const uint64_t seen = ~negw[q] & start[q];
        seenw[q] = seen;
        okw[q] = win.any(eqw[q], eqw[q + 1]) & seen;
        holes |= win.any(negw[q], negw[q + 1]) & seen;
    }
    hole_error = holes;
    RowCounts r;
    if (used == 1) {  // the common case: row j's flags are bit 0 after j shifts by m
        uint64_t sw = seenw[0], ow = okw[0];
        const int step = m < 64 ? static_cast<int>(m) : 0;  // e == 1 when m == 64
        for (int64_t j = 0; j < e; ++j, sw >>= step, ow >>= step) {
            const uint64_t a = sw & 1, b = ow & 1;
            observed[j] = static_cast<uint8_t>(a);
            correct[j] = static_cast<uint8_t>(b);
            env_observed[j] += static_cast<int64_t>(a);
            env_correct[j] += static_cast<int64_t>(b);
            r.observed += static_cast<int64_t>(a);
            r.correct += static_cast<int64_t>(b);
        }
        return r;
    }
    for (int64_t j = 0, p = 0; j < e; ++j, p += m) {
        const int sh = static_cast<int>(p & 63);
        const uint64_t a = (seenw[p >> 6] >> sh) & 1, b = (okw[p >> 6] >> sh) & 1;
        observed[j] = static_cast<uint8_t>(a);
        correct[j] = static_cast<uint8_t>(b);
        env_observed[j] += static_cast<int64_t>(a);
        env_correct[j] += static_cast<int64_t>(b);
        r.observed += static_cast<int64_t>(a);
        r.correct += static_cast<int64_t>(b);
    }
    return r;
}

// Needs 16 <= e * m <= kSimdMaxEntries and width <= 64; labels outside Index's range match nothing.
template <class Index, int Width>
void ranked_simd(const Index* ranked, int64_t n, int64_t e, int64_t m, int64_t k, int64_t n_classes,
                 LabelSets labels, InstabilityOutputs& out, int threads) {
    using L = Lanes16<Index>;
    constexpr int64_t kMax = std::numeric_limits<Index>::max();
    const int64_t upper = n_classes >= 0 ? n_classes : INT64_MAX;
    const int64_t width = labels.width, total = e * m, words = total / 64 + 2;
    const __m128i lo = L::set1(-1), hi = L::set1(std::min(upper - 1, kMax));
    const Window win(k);
    std::vector<uint64_t> start(static_cast<size_t>(words), 0);  // bit j * m: row j's first entry
    for (int64_t j = 0; j < e; ++j) start[static_cast<size_t>(j * m / 64)] |= uint64_t{1} << (j * m % 64);
    const uint64_t* const starts = start.data();
    run_images(n, e, out, threads,
               [=](int64_t i, uint8_t* correct, uint8_t* observed, int64_t* env_correct, int64_t* env_observed) {
        uint64_t eqw[kSimdMaxEntries / 64 + 2], negw[kSimdMaxEntries / 64 + 2];
        for (int64_t q = 0; q < words; ++q) eqw[q] = negw[q] = 0;
        const int32_t* lab = labels.data + i * width;
        // -1 (padding, or a label Index cannot hold) can only meet -1, which is
        // never a correct prediction: an unseen row, or a hole that is an error.
        auto label = [&](int64_t l) { return L::set1(lab[l] <= kMax ? lab[l] : -1); };
        __m128i labv[Width == 1 ? 1 : 64];
        labv[0] = label(0);  // every image has a label (width >= 1)
        if constexpr (Width != 1) {
            for (int64_t l = 1; l < width; ++l) labv[l] = label(l);
        }
        const Index* block = ranked + i * total;
        __m128i bad = _mm_setzero_si128();
        uint32_t eq, neg;
        int64_t t = 0;
        for (; t + 16 <= total; t += 16) {
            L::template masks<Width>(block + t, labv, width, lo, hi, bad, eq, neg);
            eqw[t >> 6] |= uint64_t{eq} << (t & 63);
            negw[t >> 6] |= uint64_t{neg} << (t & 63);
        }
        if (t < total) {  // the last 16 entries again; keep the bits of the new ones
            L::template masks<Width>(block + total - 16, labv, width, lo, hi, bad, eq, neg);
            const int shift = static_cast<int>(16 - (total - t));
            eqw[t >> 6] |= uint64_t{eq >> shift} << (t & 63);
            negw[t >> 6] |= uint64_t{neg >> shift} << (t & 63);
        }
        if (_mm_movemask_epi8(bad)) throw_range(block, i, e, m, upper, n_classes);
        uint64_t hole_error = 0;
        const RowCounts r = rows_from_masks(e, m, total, win, starts, eqw, negw, correct, observed, env_correct,
                                            env_observed, hole_error);
        if (hole_error) throw_hole(block, i, e, m, k);
        return r;
    });
}
#endif

template <class Index, int Width>
void ranked_dispatch(const Index* ranked, int64_t n, int64_t e, int64_t m, int64_t k, int64_t n_classes,
                     LabelSets labels, InstabilityOutputs& out, int threads) {
#if defined(__SSE2__)
    if constexpr (sizeof(Index) <= 4) {
        if (e * m >= 16 && e * m <= kSimdMaxEntries && k <= 64 && labels.width <= 64) {
            ranked_simd<Index, Width>(ranked, n, e, m, k, n_classes, labels, out, threads);
            return;
        }
    }
#endif
    ranked_impl<Index, Width>(ranked, n, e, m, k, n_classes, labels, out, threads);
}

}  // namespace

template <class Index>
void instability_ranked(const Index* ranked, int64_t n, int64_t e, int64_t m, int64_t k,
                        int64_t n_classes, LabelSets labels, InstabilityOutputs& out,
                        int threads) {
    if (labels.width == 1) {
        ranked_dispatch<Index, 1>(ranked, n, e, m, k, n_classes, labels, out, threads);
    } else {
        ranked_dispatch<Index, 0>(ranked, n, e, m, k, n_classes, labels, out, threads);
    }
}

template <class Score>
void instability_scores(const Score* scores, int64_t n, int64_t e, int64_t c, int64_t k,
                        LabelSets labels, InstabilityOutputs& out, int threads) {
    float* const confidence = out.confidence;
    run_images(n, e, out, threads,
               [=](int64_t i, uint8_t* correct, uint8_t* observed, int64_t* env_correct, int64_t* env_observed) {
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
        return count_row(e, correct, observed, env_correct, env_observed);
    });
}

template void instability_ranked<int16_t>(const int16_t*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                          LabelSets, InstabilityOutputs&, int);
template void instability_ranked<int32_t>(const int32_t*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                          LabelSets, InstabilityOutputs&, int);
template void instability_ranked<int64_t>(const int64_t*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                          LabelSets, InstabilityOutputs&, int);
template void instability_scores<float>(const float*, int64_t, int64_t, int64_t, int64_t, LabelSets,
                                        InstabilityOutputs&, int);
template void instability_scores<double>(const double*, int64_t, int64_t, int64_t, int64_t, LabelSets,
                                         InstabilityOutputs&, int);

}  // namespace instab::kernels
