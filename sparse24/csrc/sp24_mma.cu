// 2:4 sparse × dense GEMM for small token counts (decode): y[M, N] = x[M, K] · W[N, K]^T, M <= 32.
//
// Memory-bound by design: the weight is the sparse operand A of mma.sp.m16n8k32, pre-shuffled offline
// (sparse24/layout.py) so that per 16×32 tile each lane loads its four A registers with ONE 16-byte load
// (a warp reads 512 contiguous bytes) and, per 4 tiles, its metadata with ONE 8-byte load. Every byte of
// the compressed weight is read once, streamed past L1. Activations are tiny and reused by every block,
// so they come through L1/L2 as 4-byte pairs in the B-fragment order.
//
// Grid: one block per NTB row tiles (16·NTB output features); its 8 warps split K round-robin in
// k-blocks of 4 tiles (128 inputs), keep fp32 partial sums in registers and reduce them through shared
// memory at the end. MT = token tiles of 8 (1, 2 or 4); every A fragment feeds MT·1 mma.sp and every
// B fragment NTB of them. No bounds checks on the weight: N is padded to 64 and K to 128 at packing.
//
// Self-contained (no CUDA headers) so that NVRTC compiles it at load time on the serving GPU and nvcc
// can build-check it in CI: `nvcc -std=c++17 -arch=sm_90 -DSP24_INSTANTIATE -cubin sp24_mma.cu`.

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned long long u64;

struct __align__(16) U32x4 { u32 x, y, z, w; };
struct __align__(8) U32x2 { u32 x, y; };

#define SP24_WARPS 8

// Weights are read once: do not let them evict the activations from L1.
__device__ __forceinline__ U32x4 load_stream16(const U32x4* p) {
  U32x4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

__device__ __forceinline__ U32x2 load_stream8(const U32x2* p) {
  U32x2 v;
  asm("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
  return v;
}

__device__ __forceinline__ u32 load_cached4(const u32* p) {
  u32 v;
  asm("ld.global.nc.u32 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
}

// D = A·B + D with A 2:4 sparse. SEL is the sparsity selector: 0 → lanes t∈{0,1} of each quad supply
// the metadata, 1 → lanes t∈{2,3}. It must be an immediate, hence a template parameter.
template <bool BF16, int SEL>
__device__ __forceinline__ void mma_sp(float (&d)[4], const U32x4& a, const u32 (&b)[4], u32 e) {
  if constexpr (BF16) {
    asm("mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, %13;"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e),
          "n"(SEL));
  } else {
    asm("mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, %13;"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e),
          "n"(SEL));
  }
}

template <bool BF16>
__device__ __forceinline__ u16 to_half_bits(float v) {
  u16 h;
  if constexpr (BF16) {
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(v));
  } else {
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
  }
  return h;
}

// vals: [NT][KT][32] 16-byte A fragments; meta: [NT][KB][32] 8-byte metadata pairs (KT = 4·KB);
// x: [M][K] row-major, 4-byte aligned; y: [M][N]. M <= 8·MT, K % 4 == 0, NT % NTB == 0.
template <bool BF16, int MT, int NTB>
__global__ void __launch_bounds__(SP24_WARPS * 32) sp24_mma_gemm(
    const U32x4* __restrict__ vals, const U32x2* __restrict__ meta, const u16* __restrict__ x,
    u16* __restrict__ y, int M, int N, int K, int KB) {
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int g = lane >> 2;
  const int t = lane & 3;
  const int KT = KB * 4;
  const int nt0 = blockIdx.x * NTB;

  // Each lane feeds the B fragment of token 8·mt + g; lanes past M load zeros.
  const u32* xrow[MT];
  bool row_ok[MT];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    const int m = mt * 8 + g;
    row_ok[mt] = m < M;
    xrow[mt] = reinterpret_cast<const u32*>(x + (u64)(row_ok[mt] ? m : 0) * K);
  }

  float acc[NTB][MT][4];
#pragma unroll
  for (int j = 0; j < NTB; ++j)
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[j][mt][i] = 0.f;

#pragma unroll 2
  for (int kb = warp; kb < KB; kb += SP24_WARPS) {
    // Issue every weight load of this k-block before the first mma: 16·4·NTB + 8·NTB bytes per lane.
    U32x4 a[NTB][4];
    U32x2 e[NTB];
#pragma unroll
    for (int j = 0; j < NTB; ++j) {
      const U32x4* tile = vals + ((u64)(nt0 + j) * KT + (u64)kb * 4) * 32 + lane;
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) a[j][kk] = load_stream16(tile + kk * 32);
      e[j] = load_stream8(meta + ((u64)(nt0 + j) * KB + kb) * 32 + lane);
    }
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      const int k0 = (kb * 4 + kk) * 32;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        // B fragment of m16n8k32: reg r holds inputs k0 + 2t + 8r and the next one.
        u32 b[4];
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int k = k0 + 2 * t + 8 * r;
          b[r] = (row_ok[mt] && k < K) ? load_cached4(xrow[mt] + (k >> 1)) : 0u;
        }
#pragma unroll
        for (int j = 0; j < NTB; ++j) {
          // Tiles alternate selectors so that all 32 lanes' metadata bytes are useful (layout.py).
          const u32 ew = (kk < 2) ? e[j].x : e[j].y;
          if (kk & 1) {
            mma_sp<BF16, 1>(acc[j][mt], a[j][kk], b, ew);
          } else {
            mma_sp<BF16, 0>(acc[j][mt], a[j][kk], b, ew);
          }
        }
      }
    }
  }

  // Split-K reduction across the 8 warps; [warp][j][mt][reg][lane] keeps a warp's stores conflict-free.
  __shared__ float red[SP24_WARPS][NTB][MT][4][32];
#pragma unroll
  for (int j = 0; j < NTB; ++j)
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int i = 0; i < 4; ++i) red[warp][j][mt][i][lane] = acc[j][mt][i];
  __syncthreads();

  for (int o = threadIdx.x; o < NTB * MT * 128; o += blockDim.x) {
    const int l = o & 31;
    const int i = (o >> 5) & 3;
    const int mt = (o >> 7) % MT;
    const int j = (o >> 7) / MT;
    float s = 0.f;
#pragma unroll
    for (int w = 0; w < SP24_WARPS; ++w) s += red[w][j][mt][i][l];
    // Accumulator reg i of lane (g, t): output feature g + 8·(i>>1) of the tile, token 2t + (i&1).
    const int m = mt * 8 + 2 * (l & 3) + (i & 1);
    const int n = (nt0 + j) * 16 + (l >> 2) + 8 * (i >> 1);
    if (m < M && n < N) y[(u64)m * N + n] = to_half_bits<BF16>(s);
  }
}

#ifdef SP24_INSTANTIATE
// nvcc needs explicit instances to emit code; NVRTC instantiates by name expression instead.
#define SP24_INST(BF, MT, NTB)                                                                    \
  template __global__ void sp24_mma_gemm<BF, MT, NTB>(const U32x4*, const U32x2*, const u16*, u16*, \
                                                      int, int, int, int);
SP24_INST(true, 1, 1) SP24_INST(true, 1, 2) SP24_INST(true, 1, 4)
SP24_INST(true, 2, 1) SP24_INST(true, 2, 2) SP24_INST(true, 2, 4)
SP24_INST(true, 4, 1) SP24_INST(true, 4, 2)
SP24_INST(false, 1, 1) SP24_INST(false, 1, 2) SP24_INST(false, 1, 4)
SP24_INST(false, 2, 1) SP24_INST(false, 2, 2) SP24_INST(false, 2, 4)
SP24_INST(false, 4, 1) SP24_INST(false, 4, 2)
#endif
