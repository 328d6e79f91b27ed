// ConvolutionDepthwise, CPU side: parameter parsing, shapes and the direct loops.
// See include/caffe/layers/conv_dw_layer.hpp for what the layer is.
#include <algorithm>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "caffe/filler.hpp"
#include "caffe/layers/conv_dw_lanes.hpp"
#include "caffe/layers/conv_dw_layer.hpp"
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

// The first and one-past-last output column whose input column
// ow * stride - pad + offset falls inside [0, width).
inline void valid_columns(int offset, int stride, int pad, int width, int top_width,
                          int* begin, int* end) {
  // smallest ow with ow * stride >= pad - offset
  const int lo = pad - offset;
  *begin = lo <= 0 ? 0 : (lo + stride - 1) / stride;
  // largest ow with ow * stride <= width - 1 + pad - offset
  const int hi = width - 1 + pad - offset;
  *end = hi < 0 ? 0 : std::min(top_width, hi / stride + 1);
  if (*begin > *end) *begin = *end;
}

// Float blobs take the four-lane path (conv_dw_lanes.cpp) for kernels of up to 64 taps;
// double blobs, and larger kernels, the direct loops below.
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
  for (int i = 0; i < bottom.size(); ++i) {
    const Dtype* in = bottom[i]->cpu_data();
    Dtype* out = top[i]->mutable_cpu_data();
    if (lanes_forward(g, in, weight, bias, out)) continue;
    for (int nc = 0; nc < g.num * g.channels; ++nc) {
      const int c = nc % g.channels;
      const Dtype* x = in + nc * in_plane;
      Dtype* y = out + nc * out_plane;
      std::fill(y, y + out_plane, bias ? bias[c] : Dtype(0));
      const Dtype* w = weight + c * g.kernel_h * g.kernel_w;
      for (int kh = 0; kh < g.kernel_h; ++kh) {
        for (int kw = 0; kw < g.kernel_w; ++kw) {
          const Dtype wv = w[kh * g.kernel_w + kw];
          int ow_begin, ow_end;
          valid_columns(kw * g.dilation_w, g.stride_w, g.pad_w, g.width, g.top_width,
                        &ow_begin, &ow_end);
          for (int oh = 0; oh < g.top_height; ++oh) {
            const int ih = oh * g.stride_h - g.pad_h + kh * g.dilation_h;
            if (ih < 0 || ih >= g.height) continue;
            const Dtype* xrow = x + ih * g.width - g.pad_w + kw * g.dilation_w;
            Dtype* yrow = y + oh * g.top_width;
            for (int ow = ow_begin; ow < ow_end; ++ow) {
              yrow[ow] += wv * xrow[ow * g.stride_w];
            }
          }
        }
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
  for (int i = 0; i < top.size(); ++i) {
    const Dtype* top_diff = top[i]->cpu_diff();
    const Dtype* in = bottom[i]->cpu_data();
    Dtype* in_diff = propagate_down[i] ? bottom[i]->mutable_cpu_diff() : NULL;
    if (!in_diff && !weight_diff && !bias_diff) continue;
    if (lanes_backward(g, in, top_diff, weight, in_diff, weight_diff, bias_diff)) continue;
    if (in_diff) caffe_set(bottom[i]->count(), Dtype(0), in_diff);
    for (int nc = 0; nc < g.num * g.channels; ++nc) {
      const int c = nc % g.channels;
      const Dtype* dy = top_diff + nc * out_plane;
      if (bias_diff) {
        Dtype sum = 0;
        for (int j = 0; j < out_plane; ++j) sum += dy[j];
        bias_diff[c] += sum;
      }
      const Dtype* x = in + nc * in_plane;
      Dtype* dx = in_diff ? in_diff + nc * in_plane : NULL;
      const Dtype* w = weight + c * g.kernel_h * g.kernel_w;
      Dtype* dw = weight_diff ? weight_diff + c * g.kernel_h * g.kernel_w : NULL;
      for (int kh = 0; kh < g.kernel_h; ++kh) {
        for (int kw = 0; kw < g.kernel_w; ++kw) {
          const int k = kh * g.kernel_w + kw;
          const int shift = kw * g.dilation_w - g.pad_w;
          int ow_begin, ow_end;
          valid_columns(kw * g.dilation_w, g.stride_w, g.pad_w, g.width, g.top_width,
                        &ow_begin, &ow_end);
          Dtype dw_sum = 0;
          for (int oh = 0; oh < g.top_height; ++oh) {
            const int ih = oh * g.stride_h - g.pad_h + kh * g.dilation_h;
            if (ih < 0 || ih >= g.height) continue;
            const Dtype* dyrow = dy + oh * g.top_width;
            const int row = ih * g.width + shift;
            if (dw) {
              for (int ow = ow_begin; ow < ow_end; ++ow) {
                dw_sum += dyrow[ow] * x[row + ow * g.stride_w];
              }
            }
            if (dx) {
              const Dtype wv = w[k];
              for (int ow = ow_begin; ow < ow_end; ++ow) {
                dx[row + ow * g.stride_w] += wv * dyrow[ow];
              }
            }
          }
          if (dw) dw[k] += dw_sum;
        }
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
