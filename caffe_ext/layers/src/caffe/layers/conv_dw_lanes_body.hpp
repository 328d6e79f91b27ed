// The body of ConvolutionDepthwise's float CPU path, written once for any lane count.
// conv_dw_lanes.cpp includes it twice (no include guard on purpose), each time inside its
// own namespace and after defining:
//   V                   a GCC vector of kLanes floats
//   kLanes              4 (SSE, any x86-64) or 8 (AVX2 + FMA, compiled for that target)
//   load_pixels(planes, plane, i, px)   kLanes planes' values at [i, i + kLanes) as
//   store_pixels(px, plane, i, planes)  kLanes vectors of one pixel each (a transpose), and back
// See include/caffe/layers/conv_dw_lanes.hpp for the method.

// A zeroed buffer of n vectors, aligned for them (no std:: container of V: its members are
// compiled outside this ISA's target region).
struct Buffer {
  explicit Buffer(size_t n)
      : bytes((n * sizeof(V) + 63) / 64 * 64 + 64),
        data(static_cast<V*>(std::aligned_alloc(64, bytes))) {
    if (!data) throw std::bad_alloc();
    std::memset(static_cast<void*>(data), 0, bytes);
  }
  ~Buffer() { std::free(data); }
  void clear() { std::memset(static_cast<void*>(data), 0, bytes); }
  size_t bytes;
  V* data;
};

struct Layout {
  explicit Layout(const DepthwiseGeometry& g)
      : g(g), hp(g.height + 2 * g.pad_h), wp(g.width + 2 * g.pad_w),
        in_plane(g.height * g.width), out_plane(g.top_height * g.top_width),
        taps(g.kernel_h * g.kernel_w), groups((g.channels + kLanes - 1) / kLanes) {}
  const DepthwiseGeometry& g;
  int hp, wp, in_plane, out_plane, taps, groups;
};

inline V zero() {
  V v;
  for (int l = 0; l < kLanes; ++l) v[l] = 0;
  return v;
}

// Pixels [0, count) of `lanes` planes (plane apart) as vectors, unused lanes zero. A plane is
// contiguous, so the transposes run across row ends: a 6x6 plane is four blocks and a rest.
inline void load_flat(const float* planes, int plane, int count, int lanes, V* px) {
  int j = 0;
  if (lanes == kLanes) {
    for (; j + kLanes <= count; j += kLanes) load_pixels(planes, plane, j, px + j);
  }
  for (; j < count; ++j) {
    V v = zero();
    for (int l = 0; l < lanes; ++l) v[l] = planes[l * plane + j];
    px[j] = v;
  }
}

inline void store_flat(const V* px, int plane, int count, int lanes, float* planes) {
  int j = 0;
  if (lanes == kLanes) {
    for (; j + kLanes <= count; j += kLanes) store_pixels(px + j, plane, j, planes);
  }
  for (; j < count; ++j) {
    for (int l = 0; l < lanes; ++l) planes[l * plane + j] = px[j][l];
  }
}

// A compact H x W plane of vectors into the padded buffer's interior (the border stays zero), and back.
inline void pad_rows(const Layout& s, const V* compact, V* buf) {
  for (int ih = 0; ih < s.g.height; ++ih) {
    const V* from = compact + ih * s.g.width;
    V* to = buf + (ih + s.g.pad_h) * s.wp + s.g.pad_w;
    for (int iw = 0; iw < s.g.width; ++iw) to[iw] = from[iw];
  }
}

inline void unpad_rows(const Layout& s, const V* buf, V* compact) {
  for (int ih = 0; ih < s.g.height; ++ih) {
    const V* from = buf + (ih + s.g.pad_h) * s.wp + s.g.pad_w;
    V* to = compact + ih * s.g.width;
    for (int iw = 0; iw < s.g.width; ++iw) to[iw] = from[iw];
  }
}

// Per-tap weights of the channels c0 .. c0+lanes-1, one vector each.
inline void lane_weights(const Layout& s, const float* weight, int c0, int lanes, V* w) {
  for (int k = 0; k < s.taps; ++k) {
    V v = zero();
    for (int l = 0; l < lanes; ++l) v[l] = weight[(c0 + l) * s.taps + k];
    w[k] = v;
  }
}

// KH, KW: the kernel size when known at compile time (3x3 here: the taps unroll and the
// weights and gradients stay in registers), 0 for any size up to 64 taps.
template <int KH, int KW>
__attribute__((noinline)) void forward_pixels(const Layout& s, const V* buf, const V* weights, V bias, V* out) {
  const DepthwiseGeometry& g = s.g;
  const int kh = KH ? KH : g.kernel_h, kw = KW ? KW : g.kernel_w;
  const long step_h = static_cast<long>(g.dilation_h) * s.wp, step_w = g.dilation_w;
  V w[KH && KW ? KH * KW : 64];
  for (int k = 0; k < kh * kw; ++k) w[k] = weights[k];
  for (int oh = 0; oh < g.top_height; ++oh) {
    const V* row = buf + static_cast<long>(oh) * g.stride_h * s.wp;
    V* o = out + oh * g.top_width;
    for (int ow = 0; ow < g.top_width; ++ow) {
      const V* window = row + ow * g.stride_w;
      V acc = bias;
      for (int i = 0; i < kh; ++i) {
        for (int j = 0; j < kw; ++j) acc += w[i * kw + j] * window[i * step_h + j * step_w];
      }
      o[ow] = acc;
    }
  }
}

// Weight and bias gradients of one group from its compact top gradient dy (accumulated into
// dw_sum and db_sum), and the input gradient added into the padded dbuf; xbuf or dbuf NULL
// skips that part.
template <int KH, int KW>
__attribute__((noinline)) void backward_pixels(const Layout& s, const V* xbuf, V* dbuf, const V* weights,
                                               const V* dy, V* dw_sum, V* db_sum) {
  const DepthwiseGeometry& g = s.g;
  const int kh = KH ? KH : g.kernel_h, kw = KW ? KW : g.kernel_w;
  const long step_h = static_cast<long>(g.dilation_h) * s.wp, step_w = g.dilation_w;
  V db = *db_sum;
  for (int o = 0; o < s.out_plane; ++o) db += dy[o];
  *db_sum = db;
  V acc[KH && KW ? KH * KW : 64];
  if (xbuf) {
    for (int k = 0; k < kh * kw; ++k) acc[k] = dw_sum[k];
    for (int oh = 0; oh < g.top_height; ++oh) {
      const V* row = xbuf + static_cast<long>(oh) * g.stride_h * s.wp;
      const V* d = dy + oh * g.top_width;
      for (int ow = 0; ow < g.top_width; ++ow) {
        const V* window = row + ow * g.stride_w;
        const V grad = d[ow];
        for (int i = 0; i < kh; ++i) {
          for (int j = 0; j < kw; ++j) acc[i * kw + j] += grad * window[i * step_h + j * step_w];
        }
      }
    }
    for (int k = 0; k < kh * kw; ++k) dw_sum[k] = acc[k];
  }
  if (dbuf) {
    for (int k = 0; k < kh * kw; ++k) acc[k] = weights[k];
    for (int oh = 0; oh < g.top_height; ++oh) {
      V* row = dbuf + static_cast<long>(oh) * g.stride_h * s.wp;
      const V* d = dy + oh * g.top_width;
      for (int ow = 0; ow < g.top_width; ++ow) {
        V* window = row + ow * g.stride_w;
        const V grad = d[ow];
        for (int i = 0; i < kh; ++i) {
          for (int j = 0; j < kw; ++j) window[i * step_h + j * step_w] += acc[i * kw + j] * grad;
        }
      }
    }
  }
}

inline bool three_by_three(const DepthwiseGeometry& g) { return g.kernel_h == 3 && g.kernel_w == 3; }

// Multiply-adds below which one thread finishes before the others would have woken (OpenMP
// threads sleep between regions, OMP_WAIT_POLICY=PASSIVE: tens of microseconds to wake). No
// depthwise layer of the level-1 net reaches it at batch 1; every one does at batch 128.
const long kMinThreadedMacs = 1L << 20;

inline bool worth_threads(const Layout& s) {
  return static_cast<long>(s.g.num) * s.g.channels * s.out_plane * s.taps >= kMinThreadedMacs;
}

// Work is split over (image, group of kLanes channels) in memory order; each thread has its
// own buffers and its own share of the parameter gradients, added up at the end.
void forward(const DepthwiseGeometry& g, const float* in, const float* weight, const float* bias, float* out) {
  const Layout s(g);
  const long units = static_cast<long>(g.num) * s.groups;
#pragma omp parallel if (worth_threads(s))
  {
    Buffer compact(std::max(s.in_plane, s.out_plane)), buf(static_cast<size_t>(s.hp) * s.wp), w(s.taps);
#pragma omp for schedule(static)
    for (long u = 0; u < units; ++u) {
      const int n = u / s.groups, c0 = (u % s.groups) * kLanes;
      const int lanes = std::min(kLanes, g.channels - c0);
      const long first = static_cast<long>(n) * g.channels + c0;
      lane_weights(s, weight, c0, lanes, w.data);
      V b = zero();
      for (int l = 0; bias && l < lanes; ++l) b[l] = bias[c0 + l];
      load_flat(in + first * s.in_plane, s.in_plane, s.in_plane, lanes, compact.data);
      pad_rows(s, compact.data, buf.data);
      if (three_by_three(g)) {
        forward_pixels<3, 3>(s, buf.data, w.data, b, compact.data);
      } else {
        forward_pixels<0, 0>(s, buf.data, w.data, b, compact.data);
      }
      store_flat(compact.data, s.out_plane, s.out_plane, lanes, out + first * s.out_plane);
    }
  }
}

void backward(const DepthwiseGeometry& g, const float* in, const float* top_diff, const float* weight,
              float* in_diff, float* weight_diff, float* bias_diff) {
  const Layout s(g);
  const long units = static_cast<long>(g.num) * s.groups;
#pragma omp parallel if (worth_threads(s))
  {
    const size_t padded = static_cast<size_t>(s.hp) * s.wp;
    Buffer compact(std::max(s.in_plane, s.out_plane)), dy(s.out_plane), w(s.taps);
    Buffer xbuf(weight_diff ? padded : 1), dbuf(in_diff ? padded : 1);
    // This thread's parameter gradients, per group of channels.
    Buffer dw(static_cast<size_t>(s.groups) * s.taps), db(s.groups);
#pragma omp for schedule(static)
    for (long u = 0; u < units; ++u) {
      const int n = u / s.groups, group = u % s.groups, c0 = group * kLanes;
      const int lanes = std::min(kLanes, g.channels - c0);
      const long first = static_cast<long>(n) * g.channels + c0;
      lane_weights(s, weight, c0, lanes, w.data);
      if (weight_diff) {
        load_flat(in + first * s.in_plane, s.in_plane, s.in_plane, lanes, compact.data);
        pad_rows(s, compact.data, xbuf.data);
      }
      load_flat(top_diff + first * s.out_plane, s.out_plane, s.out_plane, lanes, dy.data);
      if (in_diff) dbuf.clear();
      V* x = weight_diff ? xbuf.data : NULL;
      V* d = in_diff ? dbuf.data : NULL;
      if (three_by_three(g)) {
        backward_pixels<3, 3>(s, x, d, w.data, dy.data, dw.data + group * s.taps, db.data + group);
      } else {
        backward_pixels<0, 0>(s, x, d, w.data, dy.data, dw.data + group * s.taps, db.data + group);
      }
      if (in_diff) {
        unpad_rows(s, dbuf.data, compact.data);
        store_flat(compact.data, s.in_plane, s.in_plane, lanes, in_diff + first * s.in_plane);
      }
    }
#pragma omp critical
    {
      for (int group = 0; group < s.groups; ++group) {
        const int c0 = group * kLanes, lanes = std::min(kLanes, g.channels - c0);
        for (int l = 0; l < lanes; ++l) {
          for (int k = 0; weight_diff && k < s.taps; ++k) weight_diff[(c0 + l) * s.taps + k] += dw.data[group * s.taps + k][l];
          if (bias_diff) bias_diff[c0 + l] += db.data[group][l];
        }
      }
    }
  }
}
