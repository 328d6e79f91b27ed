// ConvolutionDepthwise: one k x k filter per channel, computed directly (no im2col).
//
// Registered under the type name used by the released cascaded MobileNet-V2 landmark models,
// so that their prototxts and caffemodels load unchanged. Parameters come from
// convolution_param; num_output must equal the input channels and `group` is ignored.
// Weights are C x 1 x kernel_h x kernel_w, the bias (optional) has C values: the same blobs
// as a stock Convolution with group == C, so weights move freely between the two.
#ifndef CAFFE_CONV_DW_LAYER_HPP_
#define CAFFE_CONV_DW_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

// The geometry of one depthwise convolution, shared by the CPU and GPU code paths.
struct DepthwiseGeometry {
  int num, channels, height, width;           // bottom
  int top_height, top_width;                  // top
  int kernel_h, kernel_w, stride_h, stride_w;
  int pad_h, pad_w, dilation_h, dilation_w;
};

template <typename Dtype>
class ConvolutionDepthwiseLayer : public Layer<Dtype> {
 public:
  explicit ConvolutionDepthwiseLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "ConvolutionDepthwise"; }
  virtual inline int MinBottomBlobs() const { return 1; }
  virtual inline int MinTopBlobs() const { return 1; }
  virtual inline bool EqualNumBottomTopBlobs() const { return true; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  DepthwiseGeometry geo_;
  bool bias_term_;
  // GPU backward: per-sample partial sums of the weight and bias gradients, reduced over
  // the batch with one gemv against a vector of ones (avoids atomics on the weights).
  Blob<Dtype> weight_partials_;
  Blob<Dtype> bias_partials_;
  Blob<Dtype> batch_ones_;
};

}  // namespace caffe

#endif  // CAFFE_CONV_DW_LAYER_HPP_
