// Faster CPU passes for the stock BatchNorm, Scale and ReLU layers (caffe_ext).
//
// Each class derives from the stock layer and overrides only Forward_cpu/Backward_cpu: the
// parameters, blobs, shapes, GPU code and results are the stock layer's (within float
// rounding). They are registered under the stock type names ("BatchNorm", "Scale", "ReLU"),
// so every existing prototxt and caffemodel gets them; the untouched stock code stays
// registered as "StockBatchNorm", "StockScale" and "StockReLU" (see SOURCE_EDITS in
// caffe_ext/build_caffe.py), the reference the tests and tools/bench.py compare with.
//
// What makes them faster: one or two passes over memory per direction instead of the stock
// code's broadcast-by-GEMM passes, no powf per element, no full-size scratch blobs for
// BatchNorm, loops the compiler vectorises, and channels spread over the CPU's cores (see
// caffe/util/cpu_threads.hpp).
#ifndef CAFFE_FAST_CPU_LAYERS_HPP_
#define CAFFE_FAST_CPU_LAYERS_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layers/batch_norm_layer.hpp"
#include "caffe/layers/relu_layer.hpp"
#include "caffe/layers/scale_layer.hpp"

namespace caffe {

template <typename Dtype>
class FastBatchNormLayer : public BatchNormLayer<Dtype> {
 public:
  explicit FastBatchNormLayer(const LayerParameter& param) : BatchNormLayer<Dtype>(param) {}

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
};

template <typename Dtype>
class FastScaleLayer : public ScaleLayer<Dtype> {
 public:
  explicit FastScaleLayer(const LayerParameter& param) : ScaleLayer<Dtype>(param) {}

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
};

template <typename Dtype>
class FastReLULayer : public ReLULayer<Dtype> {
 public:
  explicit FastReLULayer(const LayerParameter& param) : ReLULayer<Dtype>(param) {}

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
};

}  // namespace caffe

#endif  // CAFFE_FAST_CPU_LAYERS_HPP_
