// OpenCL C of the inference plans (include/locus/inference/opencl/): the element-wise
// steps of the float plan and every step of the int8 plan. Sources live here, with the
// backend's other kernels, so that the catalog (catalog.hpp) lists them.
#pragma once

#include <string>

#include "../program_cache.hpp"
#include "common.hpp"

namespace locus::backend::opencl::kernels {

/// What both programs share: the write-back activations (0 linear, 1 relu, 2 sigmoid,
/// 3 tanh; gemm_activation's order).
inline const char* inference_prelude() {
  return R"CLC(
inline float act_of(float z, int act) {
  if (act == 1) return fmax(z, 0.0f);
  if (act == 2) return 1.0f / (1.0f + exp(-z));
  if (act == 3) return tanh(z);
  return z;
}
)CLC";
}

/// The OpenCL C of the element-wise steps. act: 0 linear, 1 relu, 2 sigmoid, 3 tanh.
inline const std::string& inference_float_source() {
  static const std::string text = std::string(inference_prelude()) + R"CLC(
__kernel void inf_add(__global const float* a, __global const float* b, __global float* y,
                      uint n, int act) {
  const uint i = get_global_id(0);
  if (i < n) y[i] = act_of(a[i] + b[i], act);
}
__kernel void inf_affine(__global const float* x, __global const float* scale,
                         __global const float* shift, __global float* y, uint n, uint c,
                         int act) {
  const uint i = get_global_id(0);
  if (i < n) y[i] = act_of(fma(x[i], scale[i % c], shift[i % c]), act);
}
__kernel void inf_activation(__global const float* x, __global float* y, uint n, int act) {
  const uint i = get_global_id(0);
  if (i < n) y[i] = act_of(x[i], act);
}
__kernel void inf_softmax(__global const float* x, __global float* y, uint rows, uint len) {
  const uint r = get_global_id(0);
  if (r >= rows) return;
  __global const float* p = x + (size_t)r * len;
  __global float* q = y + (size_t)r * len;
  float m = -INFINITY;
  for (uint i = 0; i < len; ++i) m = fmax(m, p[i]);
  float s = 0.0f;
  for (uint i = 0; i < len; ++i) s += (q[i] = exp(p[i] - m));
  const float inv = 1.0f / s;
  for (uint i = 0; i < len; ++i) q[i] *= inv;
}
)CLC";
  return text;
}

/// The OpenCL C of the int8 steps. Requantisation: q = clamp(rint(f * inv) + zp, 0, 255).
inline const std::string& inference_int8_source() {
  static const std::string text = std::string(inference_prelude()) + R"CLC(
inline uchar requant(float f, float inv, int zp) {
  return (uchar)clamp(rint(f * inv) + (float)zp, 0.0f, 255.0f);
}
/* out_float != 0: y is float, else uchar (requantised with inv, zp). */
inline void put(__global void* y, uint i, float f, int out_float, float inv, int zp) {
  if (out_float) ((__global float*)y)[i] = f;
  else ((__global uchar*)y)[i] = requant(f, inv, zp);
}
__kernel void q_quantize(__global const float* x, __global uchar* y, uint n, float inv, int zp) {
  const uint i = get_global_id(0);
  if (i < n) y[i] = requant(x[i], inv, zp);
}
/* One work-item per (row, k) of the im2col matrix; rows of kp bytes. */
__kernel void q_im2col(__global const uchar* x, __global uchar* cols, uint total, uint kp,
                       uint h, uint w, uint c, uint kh, uint kw, uint sh, uint sw, uint pt,
                       uint pl, uint oh, uint ow, int zp) {
  const uint i = get_global_id(0);
  if (i >= total) return;
  const uint row = i / kp, k = i % kp;
  if (k >= kh * kw * c) { cols[i] = 0; return; }
  const uint ch = k % c, j = (k / c) % kw, r = k / (c * kw);
  const uint ox = row % ow, oy = (row / ow) % oh, n = row / (ow * oh);
  const int y0 = (int)(oy * sh + r) - (int)pt, x0 = (int)(ox * sw + j) - (int)pl;
  cols[i] = (y0 < 0 || x0 < 0 || y0 >= (int)h || x0 >= (int)w)
                ? (uchar)zp : x[(((size_t)n * h + (uint)y0) * w + (uint)x0) * c + ch];
}
/* One work-item per output (row, n): the uchar4 x char4 dot products over kp. */
__kernel void q_gemm(__global const uchar* a, __global const char* bt, uint rows, uint units,
                     uint kp, __global const int* corr, __global const float* mult,
                     __global const float* bias, int act, __global void* y, int out_float,
                     float inv, int zp) {
  const uint i = get_global_id(0);
  if (i >= rows * units) return;
  const uint r = i / units, n = i % units;
  __global const uchar* ar = a + (size_t)r * kp;
  __global const char* bn = bt + (size_t)n * kp;
  int acc = 0;
  for (uint k = 0; k < kp; k += 4) {
    const int4 p = convert_int4(vload4(0, ar + k)) * convert_int4(vload4(0, bn + k));
    acc += p.x + p.y + p.z + p.w;
  }
  const float f = act_of((float)(acc - corr[n]) * mult[n] + bias[n], act);
  put(y, i, f, out_float, inv, zp);
}
/* One work-item per output (image, oy, ox, c): max or average of the window's codes. */
__kernel void q_pool(__global const uchar* x, __global void* y, uint total, uint h, uint w,
                     uint c, uint ph, uint pw, uint sh, uint sw, uint pt, uint pl, uint oh,
                     uint ow, int is_max, float s_in, int z_in, int out_float, float inv,
                     int zp) {
  const uint i = get_global_id(0);
  if (i >= total) return;
  const uint ch = i % c, ox = (i / c) % ow, oy = (i / (c * ow)) % oh, n = i / (c * ow * oh);
  const int ys = (int)(oy * sh) - (int)pt, xs = (int)(ox * sw) - (int)pl;
  const uint y0 = (uint)max(ys, 0), x0 = (uint)max(xs, 0);
  const uint y1 = (uint)min(ys + (int)ph, (int)h), x1 = (uint)min(xs + (int)pw, (int)w);
  int a = 0;
  for (uint yy = y0; yy < y1; ++yy)
    for (uint xx = x0; xx < x1; ++xx) {
      const int v = x[(((size_t)n * h + yy) * w + xx) * c + ch];
      a = is_max ? max(a, v) : a + v;
    }
  if (is_max && !out_float) { ((__global uchar*)y)[i] = (uchar)a; return; }
  const float q = is_max ? (float)a : (float)a / (float)((y1 - y0) * (x1 - x0));
  put(y, i, s_in * (q - (float)z_in), out_float, inv, zp);
}
__kernel void q_add(__global const uchar* a, __global const uchar* b, __global void* y, uint n,
                    float sa, int za, float sb, int zb, int act, int out_float, float inv,
                    int zp) {
  const uint i = get_global_id(0);
  if (i >= n) return;
  const float f = sa * (float)((int)a[i] - za) + sb * (float)((int)b[i] - zb);
  put(y, i, act_of(f, act), out_float, inv, zp);
}
__kernel void q_affine(__global const uchar* x, __global const float* scale,
                       __global const float* shift, __global void* y, uint n, uint c,
                       float s_in, int z_in, int act, int out_float, float inv, int zp) {
  const uint i = get_global_id(0);
  if (i >= n) return;
  const float r = s_in * (float)((int)x[i] - z_in);
  put(y, i, act_of(r * scale[i % c] + shift[i % c], act), out_float, inv, zp);
}
__kernel void q_softmax(__global const uchar* x, __global void* y, uint rows, uint len,
                        float s_in, int z_in, int out_float, float inv, int zp) {
  const uint r = get_global_id(0);
  if (r >= rows) return;
  __global const uchar* p = x + (size_t)r * len;
  float m = -INFINITY;
  for (uint i = 0; i < len; ++i) m = fmax(m, s_in * (float)((int)p[i] - z_in));
  float s = 0.0f;
  for (uint i = 0; i < len; ++i) s += exp(s_in * (float)((int)p[i] - z_in) - m);
  for (uint i = 0; i < len; ++i)
    put(y, r * len + i, exp(s_in * (float)((int)p[i] - z_in) - m) / s, out_float, inv, zp);
}
__kernel void f_softmax(__global float* y, uint rows, uint len) {
  const uint r = get_global_id(0);
  if (r >= rows) return;
  __global float* q = y + (size_t)r * len;
  float m = -INFINITY;
  for (uint i = 0; i < len; ++i) m = fmax(m, q[i]);
  float s = 0.0f;
  for (uint i = 0; i < len; ++i) s += (q[i] = exp(q[i] - m));
  const float inv = 1.0f / s;
  for (uint i = 0; i < len; ++i) q[i] *= inv;
}
)CLC";
  return text;
}

/// The programs, built with the base options (OpenCL C 1.2).
inline const program_source& inference_float_program() {
  static const program_source src("locus_inference_float", inference_float_source(),
                                  base_options());
  return src;
}
inline const program_source& inference_int8_program() {
  static const program_source src("locus_inference_int8", inference_int8_source(), base_options());
  return src;
}

}  // namespace locus::backend::opencl::kernels
