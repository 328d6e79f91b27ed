// ConvolutionDepthwise, float CPU path: the body (conv_dw_lanes_body.hpp) compiled twice,
// for SSE with four channels per vector (any x86-64) and for AVX2 + FMA with eight, and the
// one chosen when the process first runs the layer: AVX2 where the CPU has it, unless
// CAFFE_EXT_DEPTHWISE_ISA=sse asks for the baseline (tests compare the two).
// -O3 for the vector loops (Caffe compiles at -O2); no -march: the AVX2 code is only a
// target region, so the library still loads and runs on any x86-64 CPU.
#pragma GCC optimize("O3")

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "caffe/layers/conv_dw_lanes.hpp"

namespace caffe {

namespace dw_sse {

typedef float V __attribute__((vector_size(16)));
const int kLanes = 4;

inline void load_pixels(const float* planes, int plane, int i, V* px) {
  __m128 a = _mm_loadu_ps(planes + i), b = _mm_loadu_ps(planes + plane + i);
  __m128 c = _mm_loadu_ps(planes + 2 * plane + i), d = _mm_loadu_ps(planes + 3 * plane + i);
  _MM_TRANSPOSE4_PS(a, b, c, d);
  px[0] = (V)a; px[1] = (V)b; px[2] = (V)c; px[3] = (V)d;
}

inline void store_pixels(const V* px, int plane, int i, float* planes) {
  __m128 a = (__m128)px[0], b = (__m128)px[1], c = (__m128)px[2], d = (__m128)px[3];
  _MM_TRANSPOSE4_PS(a, b, c, d);
  _mm_storeu_ps(planes + i, a);
  _mm_storeu_ps(planes + plane + i, b);
  _mm_storeu_ps(planes + 2 * plane + i, c);
  _mm_storeu_ps(planes + 3 * plane + i, d);
}

#include "conv_dw_lanes_body.hpp"

}  // namespace dw_sse

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace dw_avx2 {

typedef float V __attribute__((vector_size(32)));
const int kLanes = 8;

// r[0..7] = rows of an 8 x 8 block in, its columns out.
inline void transpose8(__m256* r) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

inline void load_pixels(const float* planes, int plane, int i, V* px) {
  __m256 r[8];
  for (int l = 0; l < 8; ++l) r[l] = _mm256_loadu_ps(planes + l * plane + i);
  transpose8(r);
  for (int l = 0; l < 8; ++l) px[l] = (V)r[l];
}

inline void store_pixels(const V* px, int plane, int i, float* planes) {
  __m256 r[8];
  for (int l = 0; l < 8; ++l) r[l] = (__m256)px[l];
  transpose8(r);
  for (int l = 0; l < 8; ++l) _mm256_storeu_ps(planes + l * plane + i, r[l]);
}

#include "conv_dw_lanes_body.hpp"

}  // namespace dw_avx2

#pragma GCC pop_options

namespace {

bool use_avx2() {
  static const bool chosen = [] {
    const char* isa = std::getenv("CAFFE_EXT_DEPTHWISE_ISA");
    if (isa && std::string(isa) == "sse") return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return chosen;
}

}  // namespace

void depthwise_lanes_forward(const DepthwiseGeometry& g, const float* in, const float* weight,
                             const float* bias, float* out) {
  if (use_avx2()) {
    dw_avx2::forward(g, in, weight, bias, out);
  } else {
    dw_sse::forward(g, in, weight, bias, out);
  }
}

void depthwise_lanes_backward(const DepthwiseGeometry& g, const float* in, const float* top_diff,
                              const float* weight, float* in_diff, float* weight_diff,
                              float* bias_diff) {
  if (use_avx2()) {
    dw_avx2::backward(g, in, top_diff, weight, in_diff, weight_diff, bias_diff);
  } else {
    dw_sse::backward(g, in, top_diff, weight, in_diff, weight_diff, bias_diff);
  }
}

}  // namespace caffe
