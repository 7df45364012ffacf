// A minimal fork-join parallel loop over a batch axis.
//
// Work is split into contiguous, equally sized chunks; every item is computed by
// exactly one thread and items never share state, so results are identical for
// any thread count. Exceptions thrown by a worker are re-thrown in the caller.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace instab {

// Number of worker threads to use: `requested` if positive, else all cores.
inline int resolve_threads(int requested) {
    if (requested > 0) return requested;
    unsigned hc = std::thread::hardware_concurrency();
    return hc == 0 ? 1 : static_cast<int>(hc);
}

// The number of chunks parallel_chunks will use for n items.
inline int chunk_count(int64_t n, int threads) {
    return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(threads), n)));
}

// Calls fn(chunk, begin, end) on chunk_count(n, threads) disjoint contiguous
// ranges covering [0, n), one thread per chunk.
template <class Fn>
void parallel_chunks(int64_t n, int threads, Fn&& fn) {
    if (n <= 0) return;
    const int t = chunk_count(n, threads);
    if (t <= 1) {
        fn(0, int64_t{0}, n);
        return;
    }
    std::exception_ptr error;
    std::mutex error_mutex;
    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(t - 1));
    auto run = [&](int c, int64_t b, int64_t e) {
        try {
            fn(c, b, e);
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
        }
    };
    const int64_t chunk = n / t, extra = n % t;
    int64_t begin = 0;
    for (int i = 0; i < t; ++i) {
        int64_t end = begin + chunk + (i < extra ? 1 : 0);
        if (i == t - 1) {
            run(i, begin, end);  // the calling thread takes the last chunk
        } else {
            pool.emplace_back(run, i, begin, end);
        }
        begin = end;
    }
    for (auto& th : pool) th.join();
    if (error) std::rethrow_exception(error);
}

// Calls fn(begin, end) on disjoint contiguous ranges covering [0, n).
template <class Fn>
void parallel_for(int64_t n, int threads, Fn&& fn) {
    parallel_chunks(n, threads, [&](int, int64_t b, int64_t e) { fn(b, e); });
}

}  // namespace instab
