// Wing loss (Feng et al., "Wing Loss for Robust Facial Landmark Localisation with
// Convolutional Neural Networks", CVPR 2018), a layer of caffe_ext.
//
// For each coordinate difference x = prediction - label:
//   w * ln(1 + |x| / epsilon)   when |x| < w,
//   |x| - C                     otherwise, C = w - w * ln(1 + w / epsilon),
// summed over coordinates and divided by the batch size (EuclideanLoss divides by twice the
// batch size; the loss_weight scales both the same way). Small and medium errors weigh more
// than under L2, large ones (outliers, label noise) less. `w` and `epsilon` come from
// wing_loss_param, in label units (our labels are normalised: 1 = half the input's side).
#ifndef CAFFE_WING_LOSS_LAYER_HPP_
#define CAFFE_WING_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/layers/loss_layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

template <typename Dtype>
class WingLossLayer : public LossLayer<Dtype> {
 public:
  explicit WingLossLayer(const LayerParameter& param) : LossLayer<Dtype>(param), diff_() {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "WingLoss"; }
  // Either bottom may receive a gradient, as with EuclideanLoss.
  virtual inline bool AllowForceBackward(const int bottom_index) const { return true; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
                            const vector<Blob<Dtype>*>& bottom);

  Blob<Dtype> diff_;  // prediction - label, kept for the backward pass
  Dtype w_, epsilon_, c_;
};

}  // namespace caffe

#endif  // CAFFE_WING_LOSS_LAYER_HPP_
