// Wing loss, CPU passes (a GPU build runs them through Layer's default CPU fallback: the
// blob is batch x 10 values, too small for a kernel to matter).
#include <cmath>
#include <vector>

#include "caffe/layers/wing_loss_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void WingLossLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  LossLayer<Dtype>::LayerSetUp(bottom, top);
  const WingLossParameter& p = this->layer_param_.wing_loss_param();
  w_ = p.w();
  epsilon_ = p.epsilon();
  CHECK_GT(w_, 0) << "WingLoss: w must be positive";
  CHECK_GT(epsilon_, 0) << "WingLoss: epsilon must be positive";
  c_ = w_ - w_ * std::log(Dtype(1) + w_ / epsilon_);
}

template <typename Dtype>
void WingLossLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  LossLayer<Dtype>::Reshape(bottom, top);
  CHECK_EQ(bottom[0]->count(1), bottom[1]->count(1)) << "WingLoss: inputs must have the same dimension";
  diff_.ReshapeLike(*bottom[0]);
}

template <typename Dtype>
void WingLossLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int count = bottom[0]->count();
  caffe_sub(count, bottom[0]->cpu_data(), bottom[1]->cpu_data(), diff_.mutable_cpu_data());
  const Dtype* d = diff_.cpu_data();
  double sum = 0;
  for (int i = 0; i < count; ++i) {
    const Dtype a = std::fabs(d[i]);
    sum += a < w_ ? w_ * std::log(Dtype(1) + a / epsilon_) : a - c_;
  }
  top[0]->mutable_cpu_data()[0] = static_cast<Dtype>(sum / bottom[0]->num());
}

template <typename Dtype>
void WingLossLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
                                        const vector<Blob<Dtype>*>& bottom) {
  const int count = diff_.count();
  const Dtype* d = diff_.cpu_data();
  for (int b = 0; b < 2; ++b) {
    if (!propagate_down[b]) continue;
    // d loss / d prediction = +g, d loss / d label = -g
    const Dtype scale = (b == 0 ? 1 : -1) * top[0]->cpu_diff()[0] / bottom[b]->num();
    Dtype* out = bottom[b]->mutable_cpu_diff();
    for (int i = 0; i < count; ++i) {
      const Dtype a = std::fabs(d[i]);
      const Dtype sign = d[i] > 0 ? Dtype(1) : (d[i] < 0 ? Dtype(-1) : Dtype(0));
      const Dtype g = a < w_ ? w_ / (epsilon_ + a) : Dtype(1);
      out[i] = scale * sign * g;
    }
  }
}

INSTANTIATE_CLASS(WingLossLayer);
REGISTER_LAYER_CLASS(WingLoss);

}  // namespace caffe
