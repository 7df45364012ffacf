// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
//
// Every draw is a pure function of (seed, stream, counter): the stream is the
// image index and the counter the draw index within that image. No state is
// carried between images, so any thread count or batch split gives the same
// numbers for the same image.
#pragma once

#include <cmath>
#include <cstdint>

namespace instab {

struct Philox4x32 {
    uint32_t v[4];
};

inline Philox4x32 philox4x32_10(uint64_t seed, uint64_t stream, uint64_t counter) {
    uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
    uint32_t c2 = static_cast<uint32_t>(stream), c3 = static_cast<uint32_t>(stream >> 32);
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
        uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
        uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
        uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
        uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return Philox4x32{{c0, c1, c2, c3}};
}

// Uniform in (0, 1): never exactly 0, so log() is safe.
inline double u32_to_open_unit(uint32_t hi, uint32_t lo) {
    uint64_t bits = (static_cast<uint64_t>(hi) << 21) ^ (lo >> 11);  // 53 random bits
    bits &= (uint64_t{1} << 53) - 1;
    return (static_cast<double>(bits) + 0.5) * (1.0 / 9007199254740992.0);
}

// A per-image stream of draws. `draw` counts blocks of four 32-bit words.
class CounterRng {
public:
    CounterRng(uint64_t seed, uint64_t stream) : seed_(seed), stream_(stream) {}

    // Two uniforms in (0,1) from block `counter`.
    void uniform2(uint64_t counter, double& a, double& b) const {
        Philox4x32 r = philox4x32_10(seed_, stream_, counter);
        a = u32_to_open_unit(r.v[0], r.v[1]);
        b = u32_to_open_unit(r.v[2], r.v[3]);
    }

    double uniform(uint64_t counter) const {
        double a, b;
        uniform2(counter, a, b);
        return a;
    }

    // Two independent standard normals from block `counter` (Box-Muller).
    void normal2(uint64_t counter, double& z0, double& z1) const {
        double u1, u2;
        uniform2(counter, u1, u2);
        double r = std::sqrt(-2.0 * std::log(u1));
        double theta = 6.283185307179586476925 * u2;
        z0 = r * std::cos(theta);
        z1 = r * std::sin(theta);
    }

private:
    uint64_t seed_, stream_;
};

}  // namespace instab
