// A C interface to one Caffe deploy net, for the GPU kit's Python (3.12 there, where this
// project's pycaffe, built for the venv's Python, does not load). ctypes calls it; the
// project's own preprocessing and crop rule run in Python around it.
#include <cstring>
#include <string>

#include "caffe/caffe.hpp"

using caffe::Blob;
using caffe::Caffe;
using caffe::Net;

namespace {
struct Handle {
  Net<float>* net;
  Blob<float>* output;
  int device;  // -1: CPU
};

void UseDevice(int device) {
  if (device >= 0) {
    Caffe::SetDevice(device);
    Caffe::set_mode(Caffe::GPU);
  } else {
    Caffe::set_mode(Caffe::CPU);
  }
}
}  // namespace

extern "C" {

// deploy: prototxt; weights: caffemodel or "" (fillers' values); device: GPU id or -1 (CPU).
// output: the blob to read ("" = the net's last output).
void* cn_open(const char* deploy, const char* weights, const char* output, int device) {
  UseDevice(device);
  Handle* h = new Handle;
  h->device = device;
  h->net = new Net<float>(deploy, caffe::TEST);
  if (weights != NULL && weights[0] != '\0') h->net->CopyTrainedLayersFrom(weights);
  if (output != NULL && output[0] != '\0' && h->net->has_blob(output)) {
    h->output = h->net->blob_by_name(output).get();
  } else {
    h->output = h->net->output_blobs().back();
  }
  return h;
}

// Input side S of the N x 3 x S x S input blob.
int cn_input_size(void* handle) {
  return static_cast<Handle*>(handle)->net->input_blobs()[0]->shape(3);
}

// Forward n inputs (n x 3 x S x S float32); writes up to `capacity` outputs; returns how many
// values one forward produced (n x outputs per input), or -1 when they do not fit.
int cn_forward(void* handle, const float* input, int n, float* out, int capacity) {
  Handle* h = static_cast<Handle*>(handle);
  UseDevice(h->device);
  Blob<float>* in = h->net->input_blobs()[0];
  if (in->shape(0) != n) {
    in->Reshape(n, in->shape(1), in->shape(2), in->shape(3));
    h->net->Reshape();
  }
  std::memcpy(in->mutable_cpu_data(), input, sizeof(float) * in->count());
  h->net->Forward();
  const int count = h->output->count();
  if (count > capacity) return -1;
  std::memcpy(out, h->output->cpu_data(), sizeof(float) * count);  // synced from the GPU
  return count;
}

void cn_close(void* handle) {
  Handle* h = static_cast<Handle*>(handle);
  delete h->net;
  delete h;
}

}  // extern "C"
