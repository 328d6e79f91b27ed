// How caffe_ext's CPU layers use threads: OpenMP, with OpenMP's own thread count (one per
// CPU this process may run on; OMP_NUM_THREADS overrides it). Work below a few tens of
// thousands of values stays on the calling thread, where waking the others costs more than
// it saves (batch-1 deploy nets).
#ifndef CAFFE_UTIL_CPU_THREADS_HPP_
#define CAFFE_UTIL_CPU_THREADS_HPP_

namespace caffe {

// Values a parallel region must touch before it is split across threads.
const long kParallelMinWork = 1L << 15;

inline bool worth_threads(long values) { return values >= kParallelMinWork; }

}  // namespace caffe

#endif  // CAFFE_UTIL_CPU_THREADS_HPP_
