// GPU builds only: CPU fallbacks for the extra layers of the brocolli-caffe source
// distribution that declare GPU passes but ship no CUDA code for them (their .cpp files stub
// them only in CPU-only builds), so that a CUDA build of libcaffe links. None of them is
// used by this project's nets; the fallback just runs the layer's CPU code.
#ifndef CPU_ONLY

#include <vector>

#include "caffe/layers/hardsigmoid_layer.hpp"
#include "caffe/layers/hardswish_layer.hpp"
#include "caffe/layers/maxunpool_layer.hpp"
#include "caffe/layers/pixelshuffle_layer.hpp"
#include "caffe/layers/proposal_layer.hpp"
#include "caffe/layers/relu6_layer.hpp"
#include "caffe/layers/upsample_layer.hpp"

namespace caffe {

#define CAFFE_EXT_CPU_FORWARD(classname)                                          \
  template <typename Dtype>                                                       \
  void classname<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,          \
                                     const vector<Blob<Dtype>*>& top) {           \
    this->Forward_cpu(bottom, top);                                               \
  }                                                                               \
  INSTANTIATE_LAYER_GPU_FORWARD(classname)

#define CAFFE_EXT_CPU_BACKWARD(classname)                                         \
  template <typename Dtype>                                                       \
  void classname<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,            \
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {   \
    this->Backward_cpu(top, propagate_down, bottom);                              \
  }                                                                               \
  INSTANTIATE_LAYER_GPU_BACKWARD(classname)

CAFFE_EXT_CPU_FORWARD(HardSigmoidLayer)
CAFFE_EXT_CPU_BACKWARD(HardSigmoidLayer);
CAFFE_EXT_CPU_FORWARD(HardSwishLayer)
CAFFE_EXT_CPU_BACKWARD(HardSwishLayer);
CAFFE_EXT_CPU_FORWARD(MaxUnPoolLayer)
CAFFE_EXT_CPU_BACKWARD(MaxUnPoolLayer);
CAFFE_EXT_CPU_FORWARD(PixelShuffleLayer)
CAFFE_EXT_CPU_BACKWARD(PixelShuffleLayer);
CAFFE_EXT_CPU_FORWARD(ReLU6Layer)
CAFFE_EXT_CPU_BACKWARD(ReLU6Layer);
CAFFE_EXT_CPU_FORWARD(UpsampleLayer)
CAFFE_EXT_CPU_BACKWARD(UpsampleLayer);
// ProposalLayer has CUDA for its forward pass only; its backward has nothing to propagate.
CAFFE_EXT_CPU_BACKWARD(ProposalLayer);

}  // namespace caffe

#endif  // CPU_ONLY
