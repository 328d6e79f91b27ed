// ConvolutionDepthwise in Caffe's own test framework, built in every tree (CPU and CUDA):
//  - MatchesGroupedConvolution (every device the build has): forward, input, weight and bias
//    gradients equal to a stock Convolution with group == C on the same device;
//  - GpuMatchesCpu (CUDA builds): the CUDA kernels against the CPU code, at the level-1 net's
//    depthwise shapes, batch 1 and 128, forward and backward, within 1e-4.
// The shapes are "C H W kernel stride pad" lines from the file $CAFFE_EXT_DW_SHAPES (the GPU
// kit writes it from the generated net); without it, the 48x48 level-1 net's six shapes.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/conv_dw_layer.hpp"
#include "caffe/layers/conv_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

struct DwShape {
  int channels, height, width, kernel, stride, pad;
};

static std::vector<DwShape> LevelOneShapes() {
  std::vector<DwShape> shapes;
  const char* file = std::getenv("CAFFE_EXT_DW_SHAPES");
  if (file != NULL) {
    std::ifstream in(file);
    CHECK(in.good()) << "CAFFE_EXT_DW_SHAPES: cannot read " << file;
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream fields(line);
      DwShape s;
      CHECK(fields >> s.channels >> s.height >> s.width >> s.kernel >> s.stride >> s.pad)
          << file << ":" << number << ": expected 'C H W kernel stride pad', got '" << line << "'";
      shapes.push_back(s);
    }
    CHECK(!shapes.empty()) << file << ": no shapes";
    return shapes;
  }
  const DwShape level1[] = {{96, 24, 24, 3, 2, 1}, {144, 12, 12, 3, 1, 1}, {144, 12, 12, 3, 2, 1},
                            {192, 6, 6, 3, 1, 1},  {192, 6, 6, 3, 2, 1},   {192, 3, 3, 3, 1, 1}};
  return std::vector<DwShape>(level1, level1 + 6);
}

static LayerParameter ConvParam(const DwShape& s, bool bias, bool grouped) {
  LayerParameter param;
  ConvolutionParameter* conv = param.mutable_convolution_param();
  conv->set_num_output(s.channels);
  conv->add_kernel_size(s.kernel);
  conv->add_stride(s.stride);
  conv->add_pad(s.pad);
  conv->set_bias_term(bias);
  if (grouped) conv->set_group(s.channels);
  conv->mutable_weight_filler()->set_type("gaussian");
  conv->mutable_bias_filler()->set_type("gaussian");
  return param;
}

template <typename Dtype>
static std::vector<Dtype> Copy(const Dtype* data, int count) {
  return std::vector<Dtype>(data, data + count);
}

// One forward + backward of `layer` on (bottom, top_diff); returns top, bottom diff and the
// parameter diffs (zeroed first, since Caffe accumulates them), in that order.
template <typename Dtype>
static std::vector<std::vector<Dtype> > Pass(Layer<Dtype>* layer, Blob<Dtype>* bottom,
                                             const Blob<Dtype>& top_diff) {
  Blob<Dtype> top;
  std::vector<Blob<Dtype>*> bottoms(1, bottom), tops(1, &top);
  layer->Reshape(bottoms, tops);
  layer->Forward(bottoms, tops);
  caffe_copy(top.count(), top_diff.cpu_data(), top.mutable_cpu_diff());
  for (int i = 0; i < layer->blobs().size(); ++i) {
    caffe_set(layer->blobs()[i]->count(), Dtype(0), layer->blobs()[i]->mutable_cpu_diff());
  }
  layer->Backward(tops, std::vector<bool>(1, true), bottoms);
  std::vector<std::vector<Dtype> > out;
  out.push_back(Copy(top.cpu_data(), top.count()));
  out.push_back(Copy(bottom->cpu_diff(), bottom->count()));
  for (int i = 0; i < layer->blobs().size(); ++i) {
    out.push_back(Copy(layer->blobs()[i]->cpu_diff(), layer->blobs()[i]->count()));
  }
  return out;
}

// Largest |a - b| over the largest |b|: a relative error that all-zero outputs cannot fake.
template <typename Dtype>
static double MaxRelative(const std::vector<Dtype>& a, const std::vector<Dtype>& b) {
  double diff = 0, scale = 1e-12;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

static const char* kPassNames[] = {"forward", "input gradient", "weight gradient", "bias gradient"};

template <typename TypeParam>
class ConvolutionDepthwiseTest : public MultiDeviceTest<TypeParam> {};

TYPED_TEST_CASE(ConvolutionDepthwiseTest, TestDtypesAndDevices);

TYPED_TEST(ConvolutionDepthwiseTest, MatchesGroupedConvolution) {
  typedef typename TypeParam::Dtype Dtype;
  const DwShape shapes[] = {{3, 9, 9, 3, 1, 1}, {4, 10, 13, 3, 2, 1}, {5, 11, 8, 5, 1, 0}};
  for (int k = 0; k < 3; ++k) {
    const DwShape& s = shapes[k];
    const bool bias = (k % 2 == 0);
    Caffe::set_random_seed(1701 + k);
    Blob<Dtype> bottom(3, s.channels, s.height, s.width), top_diff;
    FillerParameter filler_param;
    filler_param.set_std(1);
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(&bottom);
    ConvolutionDepthwiseLayer<Dtype> ours(ConvParam(s, bias, false));
    ConvolutionLayer<Dtype> stock(ConvParam(s, bias, true));
    Blob<Dtype> probe;
    std::vector<Blob<Dtype>*> bottoms(1, &bottom), tops(1, &probe);
    ours.SetUp(bottoms, tops);
    stock.SetUp(bottoms, tops);
    for (int i = 0; i < ours.blobs().size(); ++i) {
      stock.blobs()[i]->CopyFrom(*ours.blobs()[i]);
    }
    top_diff.ReshapeLike(probe);
    filler.Fill(&top_diff);
    Blob<Dtype> bottom_copy;
    bottom_copy.CopyFrom(bottom, false, true);
    std::vector<std::vector<Dtype> > a = Pass<Dtype>(&ours, &bottom, top_diff);
    std::vector<std::vector<Dtype> > b = Pass<Dtype>(&stock, &bottom_copy, top_diff);
    ASSERT_EQ(a.size(), b.size());
    for (size_t p = 0; p < a.size(); ++p) {
      EXPECT_LT(MaxRelative(a[p], b[p]), 1e-5) << kPassNames[p] << " at shape " << k;
    }
  }
}

#ifndef CPU_ONLY

class DepthwiseGpuMatchesCpuTest : public ::testing::Test {};

TEST_F(DepthwiseGpuMatchesCpuTest, GpuMatchesCpu) {
  const std::vector<DwShape> shapes = LevelOneShapes();
  const int batches[] = {1, 128};
  for (size_t k = 0; k < shapes.size(); ++k) {
    for (int b = 0; b < 2; ++b) {
      const DwShape& s = shapes[k];
      Caffe::set_random_seed(4242 + k);
      Caffe::set_mode(Caffe::CPU);
      Blob<float> bottom(batches[b], s.channels, s.height, s.width), top_diff;
      FillerParameter filler_param;
      filler_param.set_std(1);
      GaussianFiller<float> filler(filler_param);
      filler.Fill(&bottom);
      ConvolutionDepthwiseLayer<float> layer(ConvParam(s, true, false));
      Blob<float> probe;
      std::vector<Blob<float>*> bottoms(1, &bottom), tops(1, &probe);
      layer.SetUp(bottoms, tops);
      top_diff.ReshapeLike(probe);
      filler.Fill(&top_diff);
      std::vector<std::vector<float> > cpu = Pass<float>(&layer, &bottom, top_diff);
      Caffe::set_mode(Caffe::GPU);
      std::vector<std::vector<float> > gpu = Pass<float>(&layer, &bottom, top_diff);
      Caffe::set_mode(Caffe::CPU);
      ASSERT_EQ(cpu.size(), gpu.size());
      for (size_t p = 0; p < cpu.size(); ++p) {
        const double err = MaxRelative(gpu[p], cpu[p]);
        std::cout << "[ dw-gpu-vs-cpu ] C=" << s.channels << " " << s.height << "x" << s.width
                  << " stride " << s.stride << " batch " << batches[b] << " " << kPassNames[p]
                  << ": max relative error " << err << std::endl;
        EXPECT_LT(err, 1e-4) << kPassNames[p] << " at C=" << s.channels << " " << s.height
                             << "x" << s.width << " stride " << s.stride << " batch " << batches[b];
      }
    }
  }
}

#endif  // CPU_ONLY

}  // namespace caffe
