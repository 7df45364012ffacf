// A minimal fork-join parallel loop over a batch axis.
//
// Work is split into contiguous, equally sized chunks; every chunk is computed by
// exactly one thread and chunks never share state, so results are identical for
// any thread count. Workers take chunks from a shared counter, so when the
// system refuses to create more threads (thread limits, address-space limits)
// the threads already running, and the calling thread, take the remaining
// chunks: the result is the same, only slower. Exceptions never escape a
// worker: the one from the lowest-numbered failing chunk is re-thrown in the
// caller after every thread has been joined.
#pragma once

#include <algorithm>
#include <atomic>
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
// ranges covering [0, n), with up to one thread per chunk.
template <class Fn>
void parallel_chunks(int64_t n, int threads, Fn&& fn) {
    if (n <= 0) return;
    const int t = chunk_count(n, threads);
    if (t <= 1) {
        fn(0, int64_t{0}, n);
        return;
    }
    const int64_t chunk = n / t, extra = n % t;
    std::atomic<int> next{0};
    // Chunks after a failed one are skipped; earlier ones still run, so the error
    // reported is that of the lowest failing chunk (the first failing item),
    // whatever the thread count or timing.
    std::atomic<int> failed_chunk{t};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto work = [&]() noexcept {
        for (int c = next.fetch_add(1); c < t; c = next.fetch_add(1)) {
            if (c > failed_chunk.load(std::memory_order_relaxed)) continue;
            const int64_t begin = c * chunk + std::min<int64_t>(c, extra);
            const int64_t end = begin + chunk + (c < extra ? 1 : 0);
            try {
                fn(c, begin, end);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (c < failed_chunk.load(std::memory_order_relaxed)) {
                    error = std::current_exception();
                    failed_chunk.store(c, std::memory_order_relaxed);
                }
            }
        }
    };
    std::vector<std::thread> pool;
    try {
        pool.reserve(static_cast<size_t>(t - 1));
        for (int i = 0; i + 1 < t; ++i) pool.emplace_back(work);
    } catch (...) {
        // No more threads (std::system_error) or no memory for the pool: the
        // workers already started and this thread share the remaining chunks.
    }
    work();  // the calling thread works too
    for (auto& th : pool) th.join();
    if (error) std::rethrow_exception(error);
}

// Calls fn(begin, end) on disjoint contiguous ranges covering [0, n).
template <class Fn>
void parallel_for(int64_t n, int threads, Fn&& fn) {
    parallel_chunks(n, threads, [&](int, int64_t b, int64_t e) { fn(b, e); });
}

}  // namespace instab
