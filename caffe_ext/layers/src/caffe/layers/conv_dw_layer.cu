// ConvolutionDepthwise, CUDA kernels: one thread per output value (forward), one per input
// value (gradient to the input, a gather, so no atomics), and one per sample, channel and
// kernel tap (gradient to the weights), whose per-sample partials one gemv sums over the batch.
#include <vector>

#include "caffe/layers/conv_dw_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
__global__ void DepthwiseForward(const int nthreads, const Dtype* in, const Dtype* weight,
    const Dtype* bias, const DepthwiseGeometry g, Dtype* out) {
  CUDA_KERNEL_LOOP(index, nthreads) {
    const int ow = index % g.top_width;
    const int oh = (index / g.top_width) % g.top_height;
    const int nc = index / (g.top_width * g.top_height);
    const int c = nc % g.channels;
    const Dtype* x = in + nc * g.height * g.width;
    const Dtype* w = weight + c * g.kernel_h * g.kernel_w;
    Dtype sum = bias ? bias[c] : Dtype(0);
    for (int kh = 0; kh < g.kernel_h; ++kh) {
      const int ih = oh * g.stride_h - g.pad_h + kh * g.dilation_h;
      if (ih < 0 || ih >= g.height) continue;
      for (int kw = 0; kw < g.kernel_w; ++kw) {
        const int iw = ow * g.stride_w - g.pad_w + kw * g.dilation_w;
        if (iw < 0 || iw >= g.width) continue;
        sum += w[kh * g.kernel_w + kw] * x[ih * g.width + iw];
      }
    }
    out[index] = sum;
  }
}

template <typename Dtype>
__global__ void DepthwiseBackwardInput(const int nthreads, const Dtype* top_diff,
    const Dtype* weight, const DepthwiseGeometry g, Dtype* bottom_diff) {
  CUDA_KERNEL_LOOP(index, nthreads) {
    const int iw = index % g.width;
    const int ih = (index / g.width) % g.height;
    const int nc = index / (g.width * g.height);
    const int c = nc % g.channels;
    const Dtype* dy = top_diff + nc * g.top_height * g.top_width;
    const Dtype* w = weight + c * g.kernel_h * g.kernel_w;
    Dtype sum = 0;
    for (int kh = 0; kh < g.kernel_h; ++kh) {
      const int oh_s = ih + g.pad_h - kh * g.dilation_h;
      if (oh_s < 0 || oh_s % g.stride_h != 0) continue;
      const int oh = oh_s / g.stride_h;
      if (oh >= g.top_height) continue;
      for (int kw = 0; kw < g.kernel_w; ++kw) {
        const int ow_s = iw + g.pad_w - kw * g.dilation_w;
        if (ow_s < 0 || ow_s % g.stride_w != 0) continue;
        const int ow = ow_s / g.stride_w;
        if (ow >= g.top_width) continue;
        sum += w[kh * g.kernel_w + kw] * dy[oh * g.top_width + ow];
      }
    }
    bottom_diff[index] = sum;
  }
}

// partials[n][c][kh][kw] = sum over the output plane of dy * x at that tap.
template <typename Dtype>
__global__ void DepthwiseWeightPartials(const int nthreads, const Dtype* top_diff,
    const Dtype* in, const DepthwiseGeometry g, Dtype* partials) {
  CUDA_KERNEL_LOOP(index, nthreads) {
    const int kw = index % g.kernel_w;
    const int kh = (index / g.kernel_w) % g.kernel_h;
    const int nc = index / (g.kernel_w * g.kernel_h);
    const Dtype* dy = top_diff + nc * g.top_height * g.top_width;
    const Dtype* x = in + nc * g.height * g.width;
    Dtype sum = 0;
    for (int oh = 0; oh < g.top_height; ++oh) {
      const int ih = oh * g.stride_h - g.pad_h + kh * g.dilation_h;
      if (ih < 0 || ih >= g.height) continue;
      for (int ow = 0; ow < g.top_width; ++ow) {
        const int iw = ow * g.stride_w - g.pad_w + kw * g.dilation_w;
        if (iw < 0 || iw >= g.width) continue;
        sum += dy[oh * g.top_width + ow] * x[ih * g.width + iw];
      }
    }
    partials[index] = sum;
  }
}

// partials[n][c] = sum of dy over the output plane.
template <typename Dtype>
__global__ void DepthwiseBiasPartials(const int nthreads, const Dtype* top_diff,
    const int plane, Dtype* partials) {
  CUDA_KERNEL_LOOP(index, nthreads) {
    const Dtype* dy = top_diff + index * plane;
    Dtype sum = 0;
    for (int j = 0; j < plane; ++j) sum += dy[j];
    partials[index] = sum;
  }
}

template <typename Dtype>
void ConvolutionDepthwiseLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const Dtype* weight = this->blobs_[0]->gpu_data();
  const Dtype* bias = bias_term_ ? this->blobs_[1]->gpu_data() : NULL;
  for (int i = 0; i < bottom.size(); ++i) {
    const int count = top[i]->count();
    DepthwiseForward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
        count, bottom[i]->gpu_data(), weight, bias, geo_, top[i]->mutable_gpu_data());
    CUDA_POST_KERNEL_CHECK;
  }
}

template <typename Dtype>
void ConvolutionDepthwiseLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const DepthwiseGeometry& g = geo_;
  const int taps = g.channels * g.kernel_h * g.kernel_w;
  const bool weight_grad = this->param_propagate_down_[0];
  const bool bias_grad = bias_term_ && this->param_propagate_down_[1];
  if (weight_grad || bias_grad) {
    vector<int> ones_shape(1, g.num);
    if (batch_ones_.shape() != ones_shape) {
      batch_ones_.Reshape(ones_shape);
      caffe_gpu_set(g.num, Dtype(1), batch_ones_.mutable_gpu_data());
    }
  }
  for (int i = 0; i < top.size(); ++i) {
    const Dtype* top_diff = top[i]->gpu_diff();
    if (weight_grad) {
      weight_partials_.Reshape(g.num, taps, 1, 1);
      const int count = weight_partials_.count();
      DepthwiseWeightPartials<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
          count, top_diff, bottom[i]->gpu_data(), g, weight_partials_.mutable_gpu_data());
      CUDA_POST_KERNEL_CHECK;
      // weight_diff += partials^T * ones (accumulate, as Caffe's layers do)
      caffe_gpu_gemv<Dtype>(CblasTrans, g.num, taps, Dtype(1), weight_partials_.gpu_data(),
          batch_ones_.gpu_data(), Dtype(1), this->blobs_[0]->mutable_gpu_diff());
    }
    if (bias_grad) {
      bias_partials_.Reshape(g.num, g.channels, 1, 1);
      const int count = bias_partials_.count();
      DepthwiseBiasPartials<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
          count, top_diff, g.top_height * g.top_width, bias_partials_.mutable_gpu_data());
      CUDA_POST_KERNEL_CHECK;
      caffe_gpu_gemv<Dtype>(CblasTrans, g.num, g.channels, Dtype(1),
          bias_partials_.gpu_data(), batch_ones_.gpu_data(), Dtype(1),
          this->blobs_[1]->mutable_gpu_diff());
    }
    if (propagate_down[i]) {
      const int count = bottom[i]->count();
      DepthwiseBackwardInput<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
          count, top_diff, this->blobs_[0]->gpu_data(), g, bottom[i]->mutable_gpu_diff());
      CUDA_POST_KERNEL_CHECK;
    }
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(ConvolutionDepthwiseLayer);

}  // namespace caffe
