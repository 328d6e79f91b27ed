// ConvolutionDepthwise, CPU side: parameter parsing, shapes and the direct loops.
// See include/caffe/layers/conv_dw_layer.hpp for what the layer is.
// Caffe compiles at -O2, where GCC leaves these loops scalar (and ReLU's select a
// mispredicted branch); -O3 vectorises them. No -march: the code runs on any x86-64.
#pragma GCC optimize("O3")

#include <algorithm>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "caffe/filler.hpp"
#include "caffe/layers/conv_dw_lanes.hpp"
#include "caffe/layers/conv_dw_layer.hpp"
#include "caffe/util/cpu_threads.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

namespace {

// Reads one spatial parameter that convolution_param may give as a repeated field
// (one value for both axes, or one per axis) or as an explicit _h/_w pair.
void spatial_param(const google::protobuf::RepeatedField<google::protobuf::uint32>& values,
                   bool has_hw, int h_value, int w_value, int fallback,
                   const char* name, const std::string& layer, int* h, int* w) {
  if (has_hw) {
    if (values.size() != 0) {
      throw std::invalid_argument("ConvolutionDepthwise layer '" + layer + "': give either " +
          std::string(name) + " or " + name + "_h/" + name + "_w, not both");
    }
    *h = h_value;
    *w = w_value;
  } else if (values.size() == 0) {
    *h = *w = fallback;
  } else if (values.size() == 1) {
    *h = *w = values.Get(0);
  } else if (values.size() == 2) {
    *h = values.Get(0);
    *w = values.Get(1);
  } else {
    throw std::invalid_argument("ConvolutionDepthwise layer '" + layer + "': " + name +
        " takes one or two values (2-D convolution only)");
  }
}

// The padded input plane split into stride_h x stride_w phase planes: padded pixel (r, c)
// lives in phase plane (r % stride_h, c % stride_w) at row r / stride_h, column
// c / stride_w, every phase plane `cols` wide. Then output (oh, ow) of tap (kh, kw) reads
// index q + offset(kh, kw) of one phase plane, with q = oh * cols + ow: each tap is ONE long
// unit-stride loop over the whole plane (columns ow >= top_width are computed and dropped).
// That keeps the loops long and vectorised, where row-by-row loops were mostly overhead.
template <typename Dtype>
class PhasedPlane {
 public:
  explicit PhasedPlane(const DepthwiseGeometry& g)
      : g_(g), rows_(g.top_height + (g.kernel_h - 1) * g.dilation_h / g.stride_h + 1),
        cols_(g.top_width + (g.kernel_w - 1) * g.dilation_w / g.stride_w + 1),
        buf_(static_cast<size_t>(g.stride_h) * g.stride_w * rows_ * cols_) {}

  int cols() const { return cols_; }
  int span() const { return g_.top_height * cols_; }  // the q range of the output plane
  void zero() { std::fill(buf_.begin(), buf_.end(), Dtype(0)); }

  // Tap k's phase plane, advanced by its offset: element q pairs with output q.
  Dtype* tap(int kh, int kw) {
    const int r = kh * g_.dilation_h, c = kw * g_.dilation_w;
    return &buf_[(static_cast<size_t>((r % g_.stride_h) * g_.stride_w + c % g_.stride_w) * rows_ +
                  r / g_.stride_h) * cols_ + c / g_.stride_w];
  }

  // Loads plane x (H x W), or (store) writes the interior back into dx (H x W).
  void load(const Dtype* x) { zero(); copy(const_cast<Dtype*>(x), true); }
  void store(Dtype* dx) {  // pixels no window reads get a zero gradient
    std::fill(dx, dx + g_.height * g_.width, Dtype(0));
    copy(dx, false);
  }

 private:
  void copy(Dtype* image, bool into_planes) {
    for (int ih = 0; ih < g_.height; ++ih) {
      const int r = ih + g_.pad_h, i = r / g_.stride_h;
      if (i >= rows_) break;  // rows below every window
      Dtype* line = image + ih * g_.width;
      for (int cp = 0; cp < g_.stride_w; ++cp) {
        Dtype* plane_row = &buf_[(static_cast<size_t>((r % g_.stride_h) * g_.stride_w + cp) * rows_ + i) * cols_];
        int j = cp >= g_.pad_w ? 0 : (g_.pad_w - cp + g_.stride_w - 1) / g_.stride_w;
        for (int iw = j * g_.stride_w + cp - g_.pad_w; iw < g_.width && j < cols_; ++j, iw += g_.stride_w) {
          if (into_planes) plane_row[j] = line[iw]; else line[iw] = plane_row[j];
        }
      }
    }
  }

  const DepthwiseGeometry& g_;
  int rows_, cols_;
  std::vector<Dtype> buf_;
};

// Out of line: GCC vectorises loops here, not inside the functions it outlines for OpenMP.
// y (top_height x top_width) = bias + sum over taps of w[k] * tap plane; `wide` is scratch
// of plane.span() values.
template <typename Dtype>
__attribute__((noinline)) static void forward_plane(PhasedPlane<Dtype>* plane, const Dtype* w, Dtype bias,
                                                    Dtype* wide, Dtype* y, const DepthwiseGeometry& g) {
  const int span = plane->span(), cols = plane->cols();
  for (int q = 0; q < span; ++q) wide[q] = bias;
  for (int kh = 0; kh < g.kernel_h; ++kh) {
    for (int kw = 0; kw < g.kernel_w; ++kw) {
      const Dtype* src = plane->tap(kh, kw);
      const Dtype wv = w[kh * g.kernel_w + kw];
      for (int q = 0; q < span; ++q) wide[q] += wv * src[q];
    }
  }
  for (int oh = 0; oh < g.top_height; ++oh) {
    std::copy(wide + oh * cols, wide + oh * cols + g.top_width, y + oh * g.top_width);
  }
}

// One plane's gradients from dy spread to `wide` rows (extra columns zero): dw[k] +=
// sum(wide * tap plane of x) when x_plane is given, and dx accumulated into the tap planes of
// dx_plane (zeroed by the caller) when that is given.
template <typename Dtype>
__attribute__((noinline)) static void backward_plane(PhasedPlane<Dtype>* x_plane, PhasedPlane<Dtype>* dx_plane,
                                                     const Dtype* w, const Dtype* dy, Dtype* wide, Dtype* dw,
                                                     const DepthwiseGeometry& g) {
  const int span = (x_plane ? x_plane : dx_plane)->span(), cols = (x_plane ? x_plane : dx_plane)->cols();
  std::fill(wide, wide + span, Dtype(0));
  for (int oh = 0; oh < g.top_height; ++oh) {
    std::copy(dy + oh * g.top_width, dy + (oh + 1) * g.top_width, wide + oh * cols);
  }
  for (int kh = 0; kh < g.kernel_h; ++kh) {
    for (int kw = 0; kw < g.kernel_w; ++kw) {
      const int k = kh * g.kernel_w + kw;
      if (x_plane) {
        const Dtype* src = x_plane->tap(kh, kw);
        Dtype sum = 0;
#pragma omp simd reduction(+:sum)
        for (int q = 0; q < span; ++q) sum += wide[q] * src[q];
        dw[k] += sum;
      }
      if (dx_plane) {
        Dtype* dst = dx_plane->tap(kh, kw);
        const Dtype wv = w[k];
        for (int q = 0; q < span; ++q) dst[q] += wv * wide[q];
      }
    }
  }
}

// Float blobs take the four-lane path (conv_dw_lanes.cpp) for kernels of up to 64 taps;
// double blobs, and larger kernels, the per-plane code below.
inline bool lanes_fit(const DepthwiseGeometry& g) { return g.kernel_h * g.kernel_w <= 64; }
inline bool lanes_forward(const DepthwiseGeometry&, const double*, const double*, const double*, double*) {
  return false;
}
inline bool lanes_forward(const DepthwiseGeometry& g, const float* in, const float* weight,
                          const float* bias, float* out) {
  if (!lanes_fit(g)) return false;
  depthwise_lanes_forward(g, in, weight, bias, out);
  return true;
}
inline bool lanes_backward(const DepthwiseGeometry&, const double*, const double*, const double*,
                           double*, double*, double*) {
  return false;
}
inline bool lanes_backward(const DepthwiseGeometry& g, const float* in, const float* top_diff,
                           const float* weight, float* in_diff, float* weight_diff, float* bias_diff) {
  if (!lanes_fit(g)) return false;
  depthwise_lanes_backward(g, in, top_diff, weight, in_diff, weight_diff, bias_diff);
  return true;
}

}  // namespace

template <typename Dtype>
void ConvolutionDepthwiseLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const ConvolutionParameter& p = this->layer_param_.convolution_param();
  const std::string& name = this->layer_param_.name();
  if (bottom[0]->num_axes() != 4) {
    throw std::invalid_argument("ConvolutionDepthwise layer '" + name +
        "': bottom must be 4-D (N x C x H x W), got " + bottom[0]->shape_string());
  }
  if (p.has_axis() && p.axis() != 1) {
    throw std::invalid_argument("ConvolutionDepthwise layer '" + name + "': axis must be 1");
  }
  const int channels = bottom[0]->channels();
  if (static_cast<int>(p.num_output()) != channels) {
    std::ostringstream msg;
    msg << "ConvolutionDepthwise layer '" << name << "': num_output (" << p.num_output()
        << ") must equal the input channels (" << channels << ")";
    throw std::invalid_argument(msg.str());
  }
  DepthwiseGeometry& g = geo_;
  g.channels = channels;
  spatial_param(p.kernel_size(), p.has_kernel_h() || p.has_kernel_w(), p.kernel_h(),
                p.kernel_w(), 0, "kernel", name, &g.kernel_h, &g.kernel_w);
  spatial_param(p.stride(), p.has_stride_h() || p.has_stride_w(), p.stride_h(), p.stride_w(),
                1, "stride", name, &g.stride_h, &g.stride_w);
  spatial_param(p.pad(), p.has_pad_h() || p.has_pad_w(), p.pad_h(), p.pad_w(), 0, "pad",
                name, &g.pad_h, &g.pad_w);
  spatial_param(p.dilation(), false, 0, 0, 1, "dilation", name, &g.dilation_h, &g.dilation_w);
  if (g.kernel_h <= 0 || g.kernel_w <= 0 || g.stride_h <= 0 || g.stride_w <= 0 ||
      g.dilation_h <= 0 || g.dilation_w <= 0 || g.pad_h < 0 || g.pad_w < 0) {
    throw std::invalid_argument("ConvolutionDepthwise layer '" + name +
        "': kernel, stride and dilation must be positive and pad non-negative");
  }
  bias_term_ = p.bias_term();
  vector<int> weight_shape(4);
  weight_shape[0] = channels;
  weight_shape[1] = 1;
  weight_shape[2] = g.kernel_h;
  weight_shape[3] = g.kernel_w;
  if (this->blobs_.size() > 0) {
    // Weights came from a caffemodel or a shared net: check they fit.
    if (this->blobs_[0]->shape() != weight_shape) {
      Blob<Dtype> expected(weight_shape);
      throw std::invalid_argument("ConvolutionDepthwise layer '" + name +
          "': weight shape " + this->blobs_[0]->shape_string() + " does not match " +
          expected.shape_string());
    }
    if (static_cast<int>(this->blobs_.size()) != (bias_term_ ? 2 : 1)) {
      throw std::invalid_argument("ConvolutionDepthwise layer '" + name +
          "': wrong number of parameter blobs for bias_term");
    }
  } else {
    this->blobs_.resize(bias_term_ ? 2 : 1);
    this->blobs_[0].reset(new Blob<Dtype>(weight_shape));
    shared_ptr<Filler<Dtype> > weight_filler(GetFiller<Dtype>(p.weight_filler()));
    weight_filler->Fill(this->blobs_[0].get());
    if (bias_term_) {
      vector<int> bias_shape(1, channels);
      this->blobs_[1].reset(new Blob<Dtype>(bias_shape));
      shared_ptr<Filler<Dtype> > bias_filler(GetFiller<Dtype>(p.bias_filler()));
      bias_filler->Fill(this->blobs_[1].get());
    }
  }
  this->param_propagate_down_.resize(this->blobs_.size(), true);
}

template <typename Dtype>
void ConvolutionDepthwiseLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  DepthwiseGeometry& g = geo_;
  for (int i = 0; i < bottom.size(); ++i) {
    if (bottom[i]->num_axes() != 4 || bottom[i]->channels() != g.channels ||
        (i > 0 && bottom[i]->shape() != bottom[0]->shape())) {
      throw std::invalid_argument("ConvolutionDepthwise layer '" + this->layer_param_.name() +
          "': every bottom must be N x " + std::to_string(g.channels) +
          " x H x W and all bottoms alike, got " + bottom[i]->shape_string());
    }
  }
  g.num = bottom[0]->num();
  g.height = bottom[0]->height();
  g.width = bottom[0]->width();
  const int extent_h = g.dilation_h * (g.kernel_h - 1) + 1;
  const int extent_w = g.dilation_w * (g.kernel_w - 1) + 1;
  g.top_height = (g.height + 2 * g.pad_h - extent_h) / g.stride_h + 1;
  g.top_width = (g.width + 2 * g.pad_w - extent_w) / g.stride_w + 1;
  if (g.top_height <= 0 || g.top_width <= 0) {
    throw std::invalid_argument("ConvolutionDepthwise layer '" + this->layer_param_.name() +
        "': the kernel does not fit the input " + bottom[0]->shape_string());
  }
  for (int i = 0; i < top.size(); ++i) {
    top[i]->Reshape(g.num, g.channels, g.top_height, g.top_width);
  }
}

template <typename Dtype>
void ConvolutionDepthwiseLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const DepthwiseGeometry& g = geo_;
  const Dtype* weight = this->blobs_[0]->cpu_data();
  const Dtype* bias = bias_term_ ? this->blobs_[1]->cpu_data() : NULL;
  const int in_plane = g.height * g.width;
  const int out_plane = g.top_height * g.top_width;
  const int taps = g.kernel_h * g.kernel_w;
  for (int i = 0; i < bottom.size(); ++i) {
    const Dtype* in = bottom[i]->cpu_data();
    Dtype* out = top[i]->mutable_cpu_data();
    if (lanes_forward(g, in, weight, bias, out)) continue;
    // Planes to threads in memory order (contiguous shares); each thread pads its planes
    // into its own buffer.
#pragma omp parallel if (worth_threads(static_cast<long>(g.num) * g.channels * out_plane * taps / 4))
    {
      PhasedPlane<Dtype> plane(g);
      std::vector<Dtype> wide(plane.span());
#pragma omp for schedule(static)
      for (long nc = 0; nc < static_cast<long>(g.num) * g.channels; ++nc) {
        const int c = nc % g.channels;
        plane.load(in + nc * in_plane);
        forward_plane(&plane, weight + c * taps, bias ? bias[c] : Dtype(0), &wide[0], out + nc * out_plane, g);
      }
    }
  }
}

template <typename Dtype>
void ConvolutionDepthwiseLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const DepthwiseGeometry& g = geo_;
  const Dtype* weight = this->blobs_[0]->cpu_data();
  // Parameter gradients accumulate, as in every Caffe layer (the solver clears them).
  Dtype* weight_diff = this->param_propagate_down_[0] ?
      this->blobs_[0]->mutable_cpu_diff() : NULL;
  Dtype* bias_diff = (bias_term_ && this->param_propagate_down_[1]) ?
      this->blobs_[1]->mutable_cpu_diff() : NULL;
  const int in_plane = g.height * g.width;
  const int out_plane = g.top_height * g.top_width;
  const int taps = g.kernel_h * g.kernel_w;
  for (int i = 0; i < top.size(); ++i) {
    const Dtype* top_diff = top[i]->cpu_diff();
    const Dtype* in = bottom[i]->cpu_data();
    Dtype* in_diff = propagate_down[i] ? bottom[i]->mutable_cpu_diff() : NULL;
    if (!in_diff && !weight_diff && !bias_diff) continue;
    if (lanes_backward(g, in, top_diff, weight, in_diff, weight_diff, bias_diff)) continue;
#pragma omp parallel if (worth_threads(static_cast<long>(g.num) * g.channels * out_plane * taps / 4))
    {
      PhasedPlane<Dtype> x_plane(g), dx_plane(g);  // the input, and dx accumulated padded
      std::vector<Dtype> wide(x_plane.span());
      // This thread's share of the parameter gradients, added up at the end.
      std::vector<Dtype> dw(static_cast<size_t>(g.channels) * taps, Dtype(0)), db(g.channels, Dtype(0));
#pragma omp for schedule(static)
      for (long nc = 0; nc < static_cast<long>(g.num) * g.channels; ++nc) {
        const int c = nc % g.channels;
        const Dtype* dy = top_diff + nc * out_plane;
        if (bias_diff) {
          for (int j = 0; j < out_plane; ++j) db[c] += dy[j];
        }
        if (weight_diff) x_plane.load(in + nc * in_plane);
        if (in_diff) dx_plane.zero();
        backward_plane(weight_diff ? &x_plane : NULL, in_diff ? &dx_plane : NULL, weight + c * taps, dy,
                       &wide[0], &dw[c * taps], g);
        if (in_diff) dx_plane.store(in_diff + nc * in_plane);
      }
#pragma omp critical
      {
        for (int j = 0; weight_diff && j < g.channels * taps; ++j) weight_diff[j] += dw[j];
        for (int c = 0; bias_diff && c < g.channels; ++c) bias_diff[c] += db[c];
      }
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(ConvolutionDepthwiseLayer);
#endif

INSTANTIATE_CLASS(ConvolutionDepthwiseLayer);
REGISTER_LAYER_CLASS(ConvolutionDepthwise);

}  // namespace caffe
