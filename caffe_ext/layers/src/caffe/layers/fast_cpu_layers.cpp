// Faster CPU passes for BatchNorm, Scale and ReLU; see include/caffe/layers/fast_cpu_layers.hpp.
// Layout everywhere: N x C x S (S = the spatial size, or inner_dim for Scale), so one channel
// is N contiguous runs of S values. Channels go to threads; sums are taken per run in float
// (vectorised) and added up in double.
// Caffe compiles at -O2, where GCC leaves these loops scalar (and ReLU's select a
// mispredicted branch); -O3 vectorises them. No -march: the code runs on any x86-64.
#pragma GCC optimize("O3")

#include <algorithm>
#include <cmath>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "caffe/layer_factory.hpp"
#include "caffe/layers/fast_cpu_layers.hpp"
#include "caffe/util/cpu_threads.hpp"

namespace caffe {

namespace {

// The loops live in small out-of-line functions: GCC does not vectorise loops inside the
// functions it outlines for OpenMP regions, but does these (at -O3, see above).
#define CAFFE_EXT_KERNEL template <typename Dtype> __attribute__((noinline)) static

CAFFE_EXT_KERNEL Dtype run_sum(const Dtype* x, int n) {
  Dtype s = 0;
#pragma omp simd reduction(+:s)
  for (int i = 0; i < n; ++i) s += x[i];
  return s;
}

CAFFE_EXT_KERNEL Dtype run_dot(const Dtype* x, const Dtype* y, int n) {
  Dtype s = 0;
#pragma omp simd reduction(+:s)
  for (int i = 0; i < n; ++i) s += x[i] * y[i];
  return s;
}

CAFFE_EXT_KERNEL Dtype run_centred_squares(const Dtype* x, Dtype mean, int n) {
  Dtype s = 0;
#pragma omp simd reduction(+:s)
  for (int i = 0; i < n; ++i) s += (x[i] - mean) * (x[i] - mean);
  return s;
}

// y = saved = (x - mean) * inv
CAFFE_EXT_KERNEL void run_normalise(const Dtype* x, Dtype* y, Dtype* saved, int n, Dtype mean, Dtype inv) {
  for (int i = 0; i < n; ++i) {
    const Dtype v = (x[i] - mean) * inv;
    y[i] = v;
    saved[i] = v;
  }
}

// dx = (dy - a - b * y) * inv
CAFFE_EXT_KERNEL void run_bn_backward(const Dtype* dy, const Dtype* y, Dtype* dx, int n, Dtype a, Dtype b,
                                      Dtype inv) {
  for (int i = 0; i < n; ++i) dx[i] = (dy[i] - a - b * y[i]) * inv;
}

// y = x * s + b, keeping a copy of x when saved is given
CAFFE_EXT_KERNEL void run_affine(const Dtype* x, Dtype* y, Dtype* saved, int n, Dtype s, Dtype b) {
  if (saved) {
    for (int i = 0; i < n; ++i) {
      const Dtype v = x[i];
      saved[i] = v;
      y[i] = v * s + b;
    }
  } else {
    for (int i = 0; i < n; ++i) y[i] = x[i] * s + b;
  }
}

// Scale's backward over one run in one pass: sums of dy and dy * x, and dx = dy * s (dx may
// be dy itself: each value is read before it is written; NULL when not wanted).
CAFFE_EXT_KERNEL void run_scale_backward(const Dtype* dy, const Dtype* x, Dtype* dx, int n, Dtype s,
                                         Dtype* sum_dy, Dtype* sum_dyx) {
  Dtype a = 0, b = 0;
  if (dx) {
#pragma omp simd reduction(+:a, b)
    for (int i = 0; i < n; ++i) {
      const Dtype g = dy[i];
      a += g;
      b += g * x[i];
      dx[i] = g * s;
    }
  } else {
#pragma omp simd reduction(+:a, b)
    for (int i = 0; i < n; ++i) {
      a += dy[i];
      b += dy[i] * x[i];
    }
  }
  *sum_dy = a;
  *sum_dyx = b;
}

// The stock formula; max/min (not a ?: on x, which GCC turns back into a branch) vectorise.
CAFFE_EXT_KERNEL void run_relu(const Dtype* x, Dtype* y, long n, Dtype slope) {
  for (long i = 0; i < n; ++i) y[i] = std::max(x[i], Dtype(0)) + slope * std::min(x[i], Dtype(0));
}

// A select between two constants, then a product: the form GCC turns into a blend.
CAFFE_EXT_KERNEL void run_relu_backward(const Dtype* x, const Dtype* dy, Dtype* dx, long n, Dtype slope) {
  for (long i = 0; i < n; ++i) {
    const Dtype factor = x[i] > 0 ? Dtype(1) : slope;
    dx[i] = dy[i] * factor;
  }
}

// This thread's share [begin, end) of n values.
inline void thread_share(long n, long* begin, long* end) {
#ifdef _OPENMP
  const int t = omp_get_thread_num(), threads = omp_get_num_threads();
#else
  const int t = 0, threads = 1;
#endif
  *begin = n * t / threads;
  *end = n * (t + 1) / threads;
}

}  // namespace

// ---------------------------------------------------------------- BatchNorm

template <typename Dtype>
void FastBatchNormLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int num = bottom[0]->shape(0);
  const int channels = this->channels_;
  const int spatial = bottom[0]->count() / (num * channels);
  const Dtype* x = bottom[0]->cpu_data();
  Dtype* y = top[0]->mutable_cpu_data();  // may be x (in place): each value is read, then written
  Dtype* saved = this->x_norm_.mutable_cpu_data();  // the normalised output, for Backward
  Dtype* mean = this->mean_.mutable_cpu_data();
  // After Forward, variance_ holds sqrt(var + eps) per channel, as the stock layer leaves it.
  Dtype* stdev = this->variance_.mutable_cpu_data();
  const bool global = this->use_global_stats_;
  std::vector<Dtype> batch_var(channels);
  if (global) {
    const Dtype stored = this->blobs_[2]->cpu_data()[0];
    const Dtype factor = stored == 0 ? 0 : 1 / stored;
    const Dtype* mean_sum = this->blobs_[0]->cpu_data();
    const Dtype* var_sum = this->blobs_[1]->cpu_data();
    for (int c = 0; c < channels; ++c) {
      mean[c] = factor * mean_sum[c];
      stdev[c] = std::sqrt(factor * var_sum[c] + this->eps_);
    }
  }
  const double m = static_cast<double>(num) * spatial;
#pragma omp parallel for schedule(static) if (worth_threads(bottom[0]->count()))
  for (int c = 0; c < channels; ++c) {
    if (!global) {  // var(X) = E((X - EX)^2), two passes; the second reads from cache
      double sum = 0;
      for (int n = 0; n < num; ++n) sum += run_sum(x + (n * channels + c) * spatial, spatial);
      const Dtype mu = static_cast<Dtype>(sum / m);
      double squares = 0;
      for (int n = 0; n < num; ++n) {
        squares += run_centred_squares(x + (n * channels + c) * spatial, mu, spatial);
      }
      mean[c] = mu;
      batch_var[c] = static_cast<Dtype>(squares / m);
      stdev[c] = std::sqrt(batch_var[c] + this->eps_);
    }
    const Dtype mu = mean[c];
    const Dtype inv = Dtype(1) / stdev[c];
    for (int n = 0; n < num; ++n) {
      const int offset = (n * channels + c) * spatial;
      run_normalise(x + offset, y + offset, saved + offset, spatial, mu, inv);
    }
  }
  if (!global) {  // the running averages, exactly as the stock layer keeps them
    Dtype* count = this->blobs_[2]->mutable_cpu_data();
    count[0] = count[0] * this->moving_average_fraction_ + 1;
    Dtype* mean_sum = this->blobs_[0]->mutable_cpu_data();
    Dtype* var_sum = this->blobs_[1]->mutable_cpu_data();
    const int per_channel = bottom[0]->count() / channels;
    const Dtype correction = per_channel > 1 ? Dtype(per_channel) / (per_channel - 1) : 1;
    for (int c = 0; c < channels; ++c) {
      mean_sum[c] = mean[c] + this->moving_average_fraction_ * mean_sum[c];
      var_sum[c] = correction * batch_var[c] + this->moving_average_fraction_ * var_sum[c];
    }
  }
}

template <typename Dtype>
void FastBatchNormLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const int num = bottom[0]->shape(0);
  const int channels = this->channels_;
  const int spatial = bottom[0]->count() / (num * channels);
  const Dtype* dy = top[0]->cpu_diff();
  Dtype* dx = bottom[0]->mutable_cpu_diff();  // may be dy (in place): per value, read then write
  const Dtype* yn = this->x_norm_.cpu_data();
  const Dtype* stdev = this->variance_.cpu_data();
  const bool global = this->use_global_stats_;
  const double m = static_cast<double>(num) * spatial;
  // dE/dX = (dE/dY - mean(dE/dY) - mean(dE/dY . Y) . Y) / sqrt(var(X) + eps); with global
  // statistics the means are constants and only the division remains.
#pragma omp parallel for schedule(static) if (worth_threads(bottom[0]->count()))
  for (int c = 0; c < channels; ++c) {
    Dtype mean_dy = 0, mean_dyy = 0;
    if (!global) {
      double sum_dy = 0, sum_dyy = 0;
      for (int n = 0; n < num; ++n) {
        const int offset = (n * channels + c) * spatial;
        sum_dy += run_sum(dy + offset, spatial);
        sum_dyy += run_dot(dy + offset, yn + offset, spatial);
      }
      mean_dy = static_cast<Dtype>(sum_dy / m);
      mean_dyy = static_cast<Dtype>(sum_dyy / m);
    }
    const Dtype inv = Dtype(1) / stdev[c];
    for (int n = 0; n < num; ++n) {
      const int offset = (n * channels + c) * spatial;
      run_bn_backward(dy + offset, yn + offset, dx + offset, spatial, mean_dy, mean_dyy, inv);
    }
  }
}

// ---------------------------------------------------------------- Scale

template <typename Dtype>
void FastScaleLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  if (bottom.size() > 1) {  // the scale comes from a second bottom: the stock code
    ScaleLayer<Dtype>::Forward_cpu(bottom, top);
    return;
  }
  const int outer = this->outer_dim_, dim = this->scale_dim_, inner = this->inner_dim_;
  const bool in_place = bottom[0] == top[0];
  const Dtype* x = bottom[0]->cpu_data();
  Dtype* y = top[0]->mutable_cpu_data();
  // In place, Backward needs the input, which the output overwrites: keep a copy (stock too).
  Dtype* saved = in_place ? this->temp_.mutable_cpu_data() : NULL;
  const Dtype* scale = this->blobs_[0]->cpu_data();
  const Dtype* bias = this->bias_layer_ ? this->blobs_[this->bias_param_id_]->cpu_data() : NULL;
  const int runs = outer * dim;
#pragma omp parallel for schedule(static) if (worth_threads(bottom[0]->count()))
  for (int r = 0; r < runs; ++r) {
    const int d = r % dim;
    const Dtype s = scale[d], b = bias ? bias[d] : Dtype(0);
    const long offset = static_cast<long>(r) * inner;
    run_affine(x + offset, y + offset, saved ? saved + offset : NULL, inner, s, b);
  }
}

template <typename Dtype>
void FastScaleLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (bottom.size() > 1) {
    ScaleLayer<Dtype>::Backward_cpu(top, propagate_down, bottom);
    return;
  }
  const int outer = this->outer_dim_, dim = this->scale_dim_, inner = this->inner_dim_;
  const bool in_place = bottom[0] == top[0];
  const Dtype* dy = top[0]->cpu_diff();
  const Dtype* x = (in_place ? &this->temp_ : bottom[0])->cpu_data();
  const Dtype* scale = this->blobs_[0]->cpu_data();
  // Parameter gradients accumulate, as in every Caffe layer.
  Dtype* scale_diff = this->param_propagate_down_[0] ? this->blobs_[0]->mutable_cpu_diff() : NULL;
  Dtype* bias_diff = (this->bias_layer_ && this->param_propagate_down_[this->bias_param_id_]) ?
      this->blobs_[this->bias_param_id_]->mutable_cpu_diff() : NULL;
  Dtype* dx = propagate_down[0] ? bottom[0]->mutable_cpu_diff() : NULL;  // may be dy
#pragma omp parallel for schedule(static) if (worth_threads(top[0]->count()))
  for (int d = 0; d < dim; ++d) {
    double sum_dy = 0, sum_dyx = 0;
    const Dtype s = scale[d];
    for (int n = 0; n < outer; ++n) {
      const long offset = (static_cast<long>(n) * dim + d) * inner;
      Dtype run_dy, run_dyx;
      run_scale_backward(dy + offset, x + offset, dx ? dx + offset : NULL, inner, s, &run_dy, &run_dyx);
      sum_dy += run_dy;
      sum_dyx += run_dyx;
    }
    if (bias_diff) bias_diff[d] += static_cast<Dtype>(sum_dy);
    if (scale_diff) scale_diff[d] += static_cast<Dtype>(sum_dyx);
  }
}

// ---------------------------------------------------------------- ReLU

template <typename Dtype>
void FastReLULayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const Dtype* x = bottom[0]->cpu_data();
  Dtype* y = top[0]->mutable_cpu_data();
  const int count = bottom[0]->count();
  const Dtype slope = this->layer_param_.relu_param().negative_slope();
#pragma omp parallel if (worth_threads(count))
  {
    long begin, end;
    thread_share(count, &begin, &end);
    run_relu(x + begin, y + begin, end - begin, slope);
  }
}

template <typename Dtype>
void FastReLULayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) return;
  const Dtype* x = bottom[0]->cpu_data();  // in place this is the output: same sign test
  const Dtype* dy = top[0]->cpu_diff();
  Dtype* dx = bottom[0]->mutable_cpu_diff();
  const int count = bottom[0]->count();
  const Dtype slope = this->layer_param_.relu_param().negative_slope();
  // The stock dy * ((x > 0) + slope * (x <= 0))
#pragma omp parallel if (worth_threads(count))
  {
    long begin, end;
    thread_share(count, &begin, &end);
    run_relu_backward(x + begin, dy + begin, dx + begin, end - begin, slope);
  }
}

INSTANTIATE_CLASS(FastBatchNormLayer);
INSTANTIATE_CLASS(FastScaleLayer);
INSTANTIATE_CLASS(FastReLULayer);

// The stock type names now create these; the stock classes are "Stock<type>" (SOURCE_EDITS).
template <typename Dtype>
shared_ptr<Layer<Dtype> > CreateFastBatchNorm(const LayerParameter& param) {
  return shared_ptr<Layer<Dtype> >(new FastBatchNormLayer<Dtype>(param));
}
template <typename Dtype>
shared_ptr<Layer<Dtype> > CreateFastScale(const LayerParameter& param) {
  return shared_ptr<Layer<Dtype> >(new FastScaleLayer<Dtype>(param));
}
template <typename Dtype>
shared_ptr<Layer<Dtype> > CreateFastReLU(const LayerParameter& param) {
  return shared_ptr<Layer<Dtype> >(new FastReLULayer<Dtype>(param));
}
REGISTER_LAYER_CREATOR(BatchNorm, CreateFastBatchNorm);
REGISTER_LAYER_CREATOR(Scale, CreateFastScale);
REGISTER_LAYER_CREATOR(ReLU, CreateFastReLU);

}  // namespace caffe
