// ConvolutionDepthwise's float CPU path: one channel per vector lane, eight channels at a
// time with AVX2 + FMA, four with SSE (chosen at run time, see conv_dw_lanes.cpp).
//
// Blobs are N x C x H x W, so one channel's plane is contiguous and small (3x3 to 24x24 in
// the level-1 net): loops over a plane are short and mostly overhead. Here the planes of
// a group of channels are interleaved (transposed in blocks, the whole plane at once, across
// row ends) into one zero-padded buffer of vectors, so every kernel tap of every output pixel
// is one vector multiply-add, for any stride, padding or dilation, with no bounds tests (the
// padding is the buffer's zero border). 3x3 kernels get an unrolled copy whose weights and
// gradients stay in registers. Used for float blobs; the generic per-plane code in
// conv_dw_layer.cpp serves double.
#ifndef CAFFE_CONV_DW_LANES_HPP_
#define CAFFE_CONV_DW_LANES_HPP_

#include "caffe/layers/conv_dw_layer.hpp"

namespace caffe {

// out = depthwise(in) + bias (bias may be NULL); all N x C planes.
void depthwise_lanes_forward(const DepthwiseGeometry& g, const float* in, const float* weight,
                             const float* bias, float* out);

// in_diff = the input gradient (overwritten; may be NULL); weight_diff and bias_diff are
// accumulated into (either may be NULL), as Caffe's parameter gradients are.
void depthwise_lanes_backward(const DepthwiseGeometry& g, const float* in, const float* top_diff,
                              const float* weight, float* in_diff, float* weight_diff,
                              float* bias_diff);

}  // namespace caffe

#endif  // CAFFE_CONV_DW_LANES_HPP_
