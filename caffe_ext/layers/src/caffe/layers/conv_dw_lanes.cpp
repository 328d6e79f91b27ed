// ConvolutionDepthwise, float CPU path with four channels per vector; see
// include/caffe/layers/conv_dw_lanes.hpp. Work is split over (image, group of four
// channels) in memory order; each thread has its own padded buffers and its own share of the
// parameter gradients, added up at the end.
// -O3 for the vector loops (Caffe compiles at -O2); no -march: SSE2, any x86-64.
#pragma GCC optimize("O3")

#include <xmmintrin.h>  // SSE, part of every x86-64

#include <algorithm>
#include <vector>

#include "caffe/layers/conv_dw_lanes.hpp"
#include "caffe/util/cpu_threads.hpp"

namespace caffe {

namespace {

typedef float v4 __attribute__((vector_size(16)));
const int kLanes = 4;

struct Layout {
  explicit Layout(const DepthwiseGeometry& g)
      : g(g), hp(g.height + 2 * g.pad_h), wp(g.width + 2 * g.pad_w),
        in_plane(g.height * g.width), out_plane(g.top_height * g.top_width),
        taps(g.kernel_h * g.kernel_w), groups((g.channels + kLanes - 1) / kLanes) {}
  const DepthwiseGeometry& g;
  int hp, wp, in_plane, out_plane, taps, groups;
  // Offset in the padded buffer of tap k for the output pixel whose window starts at 0.
  int tap_offset(int k) const {
    return (k / g.kernel_w) * g.dilation_h * wp + (k % g.kernel_w) * g.dilation_w;
  }
};

// Four planes' values at [i, i+4) as four vectors of one pixel each (a 4x4 transpose), and
// back: the interleaving moves four pixels per step instead of one value.
inline void load_pixels(const float* planes, int plane, int i, v4* px) {
  __m128 a = _mm_loadu_ps(planes + i), b = _mm_loadu_ps(planes + plane + i);
  __m128 c = _mm_loadu_ps(planes + 2 * plane + i), d = _mm_loadu_ps(planes + 3 * plane + i);
  _MM_TRANSPOSE4_PS(a, b, c, d);
  px[0] = (v4)a; px[1] = (v4)b; px[2] = (v4)c; px[3] = (v4)d;
}

inline void store_pixels(const v4* px, int plane, int i, float* planes) {
  __m128 a = (__m128)px[0], b = (__m128)px[1], c = (__m128)px[2], d = (__m128)px[3];
  _MM_TRANSPOSE4_PS(a, b, c, d);
  _mm_storeu_ps(planes + i, a);
  _mm_storeu_ps(planes + plane + i, b);
  _mm_storeu_ps(planes + 2 * plane + i, c);
  _mm_storeu_ps(planes + 3 * plane + i, d);
}

// Pixels [i, i + count) of `lanes` planes as vectors (unused lanes zero).
inline void load_run(const float* planes, int plane, int i, int count, int lanes, v4* px) {
  int j = 0;
  if (lanes == kLanes) {
    for (; j + 4 <= count; j += 4) load_pixels(planes, plane, i + j, px + j);
  }
  for (; j < count; ++j) {
    v4 v = {0, 0, 0, 0};
    for (int l = 0; l < lanes; ++l) v[l] = planes[l * plane + i + j];
    px[j] = v;
  }
}

inline void store_run(const v4* px, int plane, int i, int count, int lanes, float* planes) {
  int j = 0;
  if (lanes == kLanes) {
    for (; j + 4 <= count; j += 4) store_pixels(px + j, plane, i + j, planes);
  }
  for (; j < count; ++j) {
    for (int l = 0; l < lanes; ++l) planes[l * plane + i + j] = px[j][l];
  }
}

// The planes of channels c0 .. c0+lanes-1 (of one image) into the padded buffer's interior.
__attribute__((noinline)) void gather(const Layout& s, const float* planes, int lanes, v4* buf) {
  const DepthwiseGeometry& g = s.g;
  for (int ih = 0; ih < g.height; ++ih) {
    load_run(planes, s.in_plane, ih * g.width, g.width, lanes, buf + (ih + g.pad_h) * s.wp + g.pad_w);
  }
}

// Per-tap weights of four channels, one vector each (zero in unused lanes).
void lane_weights(const Layout& s, const float* weight, int c0, int lanes, v4* w) {
  for (int k = 0; k < s.taps; ++k) {
    v4 v = {0, 0, 0, 0};
    for (int l = 0; l < lanes; ++l) v[l] = weight[(c0 + l) * s.taps + k];
    w[k] = v;
  }
}

__attribute__((noinline)) void forward_group(const Layout& s, const v4* buf, const v4* w, v4 bias,
                                             int lanes, float* out, v4* row_out) {
  const DepthwiseGeometry& g = s.g;
  int offsets[64];
  for (int k = 0; k < s.taps && k < 64; ++k) offsets[k] = s.tap_offset(k);
  for (int oh = 0; oh < g.top_height; ++oh) {
    const v4* row = buf + oh * g.stride_h * s.wp;
    for (int ow = 0; ow < g.top_width; ++ow) {
      const v4* window = row + ow * g.stride_w;
      v4 acc = bias;
      for (int k = 0; k < s.taps; ++k) acc += w[k] * window[offsets[k]];
      row_out[ow] = acc;
    }
    store_run(row_out, s.out_plane, oh * g.top_width, g.top_width, lanes, out);
  }
}

// Accumulates dx into the padded buffer dbuf (zeroed by the caller) and the weight/bias
// gradients into dw/db, from the four channels' top gradient planes.
__attribute__((noinline)) void backward_group(const Layout& s, const v4* xbuf, v4* dbuf, const v4* w,
                                              const float* top_diff, int lanes, v4* dw, v4* db, v4* row_dy) {
  const DepthwiseGeometry& g = s.g;
  int offsets[64];
  for (int k = 0; k < s.taps && k < 64; ++k) offsets[k] = s.tap_offset(k);
  for (int oh = 0; oh < g.top_height; ++oh) {
    load_run(top_diff, s.out_plane, oh * g.top_width, g.top_width, lanes, row_dy);
    for (int ow = 0; ow < g.top_width; ++ow) {
      const v4 dy = row_dy[ow];
      *db += dy;
      const int base = oh * g.stride_h * s.wp + ow * g.stride_w;
      if (xbuf) {
        for (int k = 0; k < s.taps; ++k) dw[k] += dy * xbuf[base + offsets[k]];
      }
      if (dbuf) {
        for (int k = 0; k < s.taps; ++k) dbuf[base + offsets[k]] += w[k] * dy;
      }
    }
  }
}

// The padded buffer's interior back into the planes of `lanes` channels.
__attribute__((noinline)) void scatter(const Layout& s, const v4* buf, int lanes, float* planes) {
  const DepthwiseGeometry& g = s.g;
  for (int ih = 0; ih < g.height; ++ih) {
    store_run(buf + (ih + g.pad_h) * s.wp + g.pad_w, s.in_plane, ih * g.width, g.width, lanes, planes);
  }
}

inline long work(const Layout& s) {
  return static_cast<long>(s.g.num) * s.g.channels * s.out_plane * s.taps / 4;
}

}  // namespace

void depthwise_lanes_forward(const DepthwiseGeometry& g, const float* in, const float* weight,
                             const float* bias, float* out) {
  const Layout s(g);
  const long units = static_cast<long>(g.num) * s.groups;
#pragma omp parallel if (worth_threads(work(s)))
  {
    std::vector<v4> buf(static_cast<size_t>(s.hp) * s.wp, v4{0, 0, 0, 0});  // border stays zero
    std::vector<v4> w(s.taps), row_out(g.top_width);
#pragma omp for schedule(static)
    for (long u = 0; u < units; ++u) {
      const int n = u / s.groups, c0 = (u % s.groups) * kLanes;
      const int lanes = std::min(kLanes, g.channels - c0);
      const long first = static_cast<long>(n) * g.channels + c0;
      lane_weights(s, weight, c0, lanes, &w[0]);
      v4 b = {0, 0, 0, 0};
      for (int l = 0; bias && l < lanes; ++l) b[l] = bias[c0 + l];
      gather(s, in + first * s.in_plane, lanes, &buf[0]);
      forward_group(s, &buf[0], &w[0], b, lanes, out + first * s.out_plane, &row_out[0]);
    }
  }
}

void depthwise_lanes_backward(const DepthwiseGeometry& g, const float* in, const float* top_diff,
                              const float* weight, float* in_diff, float* weight_diff,
                              float* bias_diff) {
  const Layout s(g);
  const long units = static_cast<long>(g.num) * s.groups;
#pragma omp parallel if (worth_threads(work(s)))
  {
    std::vector<v4> xbuf(static_cast<size_t>(s.hp) * s.wp, v4{0, 0, 0, 0});
    std::vector<v4> dbuf(xbuf.size());
    std::vector<v4> w(s.taps), row_dy(g.top_width);
    // This thread's parameter gradients, per group of four channels.
    std::vector<v4> dw(static_cast<size_t>(s.groups) * s.taps, v4{0, 0, 0, 0});
    std::vector<v4> db(s.groups, v4{0, 0, 0, 0});
#pragma omp for schedule(static)
    for (long u = 0; u < units; ++u) {
      const int n = u / s.groups, group = u % s.groups, c0 = group * kLanes;
      const int lanes = std::min(kLanes, g.channels - c0);
      const long first = static_cast<long>(n) * g.channels + c0;
      lane_weights(s, weight, c0, lanes, &w[0]);
      if (weight_diff) gather(s, in + first * s.in_plane, lanes, &xbuf[0]);
      if (in_diff) std::fill(dbuf.begin(), dbuf.end(), v4{0, 0, 0, 0});
      backward_group(s, weight_diff ? &xbuf[0] : NULL, in_diff ? &dbuf[0] : NULL, &w[0],
                     top_diff + first * s.out_plane, lanes, &dw[group * s.taps], &db[group], &row_dy[0]);
      if (in_diff) scatter(s, &dbuf[0], lanes, in_diff + first * s.in_plane);
    }
#pragma omp critical
    {
      for (int group = 0; group < s.groups; ++group) {
        const int c0 = group * kLanes, lanes = std::min(kLanes, g.channels - c0);
        for (int l = 0; l < lanes; ++l) {
          for (int k = 0; weight_diff && k < s.taps; ++k) weight_diff[(c0 + l) * s.taps + k] += dw[group * s.taps + k][l];
          if (bias_diff) bias_diff[c0 + l] += db[group][l];
        }
      }
    }
  }
}

}  // namespace caffe
