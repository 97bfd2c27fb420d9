// XLA FFI custom calls: int8 GEMMs with exact int32 results by oneDNN (ebsp_jax.arith.onednn).
//
//   C[..., m, n] = sum_k A[..., m, k] * B[..., k, n]   (int32, two's complement, mod 2**32)
//
// A is uint8 (EbspGemmU8S8) or int8 (EbspGemmS8S8), B int8, C int32, all row-major. The leading
// ("batch") dims of A and B have the same rank; each pair of sizes is equal or one of them is 1
// (broadcast, as jax.ffi's vmap_method="expand_dims" produces). oneDNN is called with
// alpha = 1, beta = 0 and zero offsets, i.e. a plain integer product; the exactness conditions
// (VNNI, or a bound on |a| |b|) are checked on the Python side before this is called.
#include <cstdint>
#include <string>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

extern "C" {
// oneDNN 3.x C API (dnnl.h), declared here: the wheel ships the library without headers.
// dnnl_status_t is an enum (int), dnnl_dim_t is int64_t.
int dnnl_gemm_u8s8s32(char transa, char transb, char offsetc, int64_t M, int64_t N, int64_t K,
                      float alpha, const uint8_t* A, int64_t lda, uint8_t ao, const int8_t* B,
                      int64_t ldb, int8_t bo, float beta, int32_t* C, int64_t ldc,
                      const int32_t* co);
int dnnl_gemm_s8s8s32(char transa, char transb, char offsetc, int64_t M, int64_t N, int64_t K,
                      float alpha, const int8_t* A, int64_t lda, int8_t ao, const int8_t* B,
                      int64_t ldb, int8_t bo, float beta, int32_t* C, int64_t ldc,
                      const int32_t* co);
}

namespace {

template <typename T>
int CallGemm(int64_t m, int64_t n, int64_t k, const T* a, const int8_t* b, int32_t* c);

template <>
int CallGemm<uint8_t>(int64_t m, int64_t n, int64_t k, const uint8_t* a, const int8_t* b,
                      int32_t* c) {
  const int32_t co = 0;
  return dnnl_gemm_u8s8s32('N', 'N', 'F', m, n, k, 1.0f, a, k, 0, b, n, 0, 0.0f, c, n, &co);
}

template <>
int CallGemm<int8_t>(int64_t m, int64_t n, int64_t k, const int8_t* a, const int8_t* b,
                     int32_t* c) {
  const int32_t co = 0;
  return dnnl_gemm_s8s8s32('N', 'N', 'F', m, n, k, 1.0f, a, k, 0, b, n, 0, 0.0f, c, n, &co);
}

template <typename T, ffi::DataType DT>
ffi::Error Gemm(ffi::Buffer<DT> a, ffi::Buffer<ffi::S8> b, ffi::ResultBuffer<ffi::S32> c) {
  auto ad = a.dimensions();
  auto bd = b.dimensions();
  if (ad.size() < 2 || ad.size() != bd.size()) {
    return ffi::Error::InvalidArgument("ebsp gemm: operands must have the same rank >= 2");
  }
  const size_t lead = ad.size() - 2;
  const int64_t m = ad[lead], k = ad[lead + 1], n = bd[lead + 1];
  if (bd[lead] != k) {
    return ffi::Error::InvalidArgument("ebsp gemm: contraction sizes differ");
  }
  // Batch index -> offsets into A and B with broadcasting of size-1 dims.
  std::vector<int64_t> out_dims(lead), a_stride(lead), b_stride(lead);
  int64_t as = m * k, bs = k * n, batch = 1;
  for (size_t i = lead; i-- > 0;) {
    if (ad[i] != bd[i] && ad[i] != 1 && bd[i] != 1) {
      return ffi::Error::InvalidArgument("ebsp gemm: batch dims do not broadcast");
    }
    out_dims[i] = ad[i] == 1 ? bd[i] : ad[i];
    a_stride[i] = ad[i] == 1 ? 0 : as;
    b_stride[i] = bd[i] == 1 ? 0 : bs;
    as *= ad[i];
    bs *= bd[i];
    batch *= out_dims[i];
  }
  const T* a_data = reinterpret_cast<const T*>(a.typed_data());
  const int8_t* b_data = b.typed_data();
  int32_t* c_data = c->typed_data();
  for (int64_t g = 0; g < batch; ++g) {
    int64_t rem = g, a_off = 0, b_off = 0;
    for (size_t i = lead; i-- > 0;) {
      const int64_t idx = rem % out_dims[i];
      rem /= out_dims[i];
      a_off += idx * a_stride[i];
      b_off += idx * b_stride[i];
    }
    int32_t* out = c_data + g * m * n;
    if (m == 0 || n == 0) continue;
    if (k == 0) {
      for (int64_t i = 0; i < m * n; ++i) out[i] = 0;
      continue;
    }
    const int status = CallGemm<T>(m, n, k, a_data + a_off, b_data + b_off, out);
    if (status != 0) {
      return ffi::Error::Internal("ebsp gemm: oneDNN returned status " +
                                  std::to_string(status));
    }
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(EbspGemmU8S8, (Gemm<uint8_t, ffi::U8>),
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::U8>>()
                                  .Arg<ffi::Buffer<ffi::S8>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(EbspGemmS8S8, (Gemm<int8_t, ffi::S8>),
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::S8>>()
                                  .Arg<ffi::Buffer<ffi::S8>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());
