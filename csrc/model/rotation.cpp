#include "model/rotation.h"

#include <cmath>
#include <random>
#include <vector>

#include "core/aligned_vector.h"
#include "core/error.h"
#include "core/fwht.h"
#include "model/quantize_matrix.h"

namespace tidal {

namespace {

constexpr int kMaxResidualHadamard = 256;
constexpr int kMaxFfnHadamard = 512;

int largest_power_of_two_dividing(int n, int cap) {
  int p = 1;
  while (p * 2 <= cap && n % (p * 2) == 0) p *= 2;
  return p;
}

// Standard normal draws from mt19937_64 by Box-Muller: std::normal_distribution
// is implementation-defined, and a seed must name one rotation everywhere.
class Gaussian {
 public:
  explicit Gaussian(uint64_t seed) : bits_(seed) {}
  double next() {
    const double u1 = (double(bits_() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = double(bits_() >> 11) * 0x1.0p-53;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }
  bool sign() { return (bits_() >> 63) != 0; }

 private:
  std::mt19937_64 bits_;
};

// Q = D (R_m ⊗ H_p) acting on row vectors of width d = m p.
class ResidualRotation {
 public:
  ResidualRotation(int d, uint64_t seed) : d_(d), p_(largest_power_of_two_dividing(d, kMaxResidualHadamard)), m_(d / p_) {
    Gaussian g(seed);
    signs_.resize(size_t(d));
    for (double& s : signs_) s = g.sign() ? -1.0 : 1.0;
    // R_m: Gram-Schmidt (modified, twice for stability) of a Gaussian matrix's rows.
    r_.resize(size_t(m_) * m_);
    for (double& v : r_) v = g.next();
    for (int i = 0; i < m_; ++i) {
      double* ri = &r_[size_t(i) * m_];
      for (int pass = 0; pass < 2; ++pass) {
        for (int j = 0; j < i; ++j) {
          const double* rj = &r_[size_t(j) * m_];
          double dot = 0;
          for (int k = 0; k < m_; ++k) dot += ri[k] * rj[k];
          for (int k = 0; k < m_; ++k) ri[k] -= dot * rj[k];
        }
      }
      double norm = 0;
      for (int k = 0; k < m_; ++k) norm += ri[k] * ri[k];
      norm = std::sqrt(norm);
      for (int k = 0; k < m_; ++k) ri[k] /= norm;
    }
  }

  // x <- x Q.
  void apply(double* x) const {
    for (int i = 0; i < d_; ++i) x[i] *= signs_[size_t(i)];
    for (int a = 0; a < m_; ++a) fwht(x + size_t(a) * p_, p_);
    std::vector<double> column(static_cast<size_t>(m_));
    for (int b = 0; b < p_; ++b) {
      for (int a2 = 0; a2 < m_; ++a2) {
        double acc = 0;
        for (int a = 0; a < m_; ++a) acc += x[size_t(a) * p_ + b] * r_[size_t(a) * m_ + a2];
        column[size_t(a2)] = acc;
      }
      for (int a2 = 0; a2 < m_; ++a2) x[size_t(a2) * p_ + b] = column[size_t(a2)];
    }
  }

 private:
  int d_, p_, m_;
  std::vector<double> signs_;
  std::vector<double> r_;  // [m][m], orthonormal rows
};

// A row-major F32 matrix being rotated, held in double.
struct Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<double> v;
  double* row(int64_t r) { return v.data() + r * cols; }
};

Matrix to_double(const Weight& w) {
  Matrix m{w.rows, w.cols, std::vector<double>(size_t(w.rows * w.cols))};
  std::vector<float> row(size_t(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_weight_row(w, r, row.data());
    for (int64_t c = 0; c < w.cols; ++c) m.v[size_t(r * w.cols + c)] = row[size_t(c)];
  }
  return m;
}

Matrix transposed(const Matrix& m) {
  Matrix t{m.cols, m.rows, std::vector<double>(m.v.size())};
  for (int64_t r = 0; r < m.rows; ++r) {
    for (int64_t c = 0; c < m.cols; ++c) t.v[size_t(c * m.rows + r)] = m.v[size_t(r * m.cols + c)];
  }
  return t;
}

// Every row scaled elementwise by gamma (an RMSNorm weight folded in).
void scale_columns(Matrix& m, const std::vector<float>& gamma) {
  for (int64_t r = 0; r < m.rows; ++r) {
    for (int64_t c = 0; c < m.cols; ++c) m.row(r)[c] *= gamma[size_t(c)];
  }
}

void rotate_rows(Matrix& m, const ResidualRotation& q) {
  for (int64_t r = 0; r < m.rows; ++r) q.apply(m.row(r));
}

// M <- Q^T M: the columns of M are vectors of the residual stream.
void rotate_columns(Matrix& m, const ResidualRotation& q) {
  Matrix t = transposed(m);
  rotate_rows(t, q);
  m = transposed(t);
}

// Each row's consecutive blocks of `block` values times H_block.
void hadamard_row_blocks(Matrix& m, int block) {
  for (int64_t r = 0; r < m.rows; ++r) {
    for (int64_t c = 0; c < m.cols; c += block) fwht(m.row(r) + c, block);
  }
}

// H_block times each block of `block` consecutive rows (H symmetric).
void hadamard_column_blocks(Matrix& m, int block) {
  Matrix t = transposed(m);
  hadamard_row_blocks(t, block);
  m = transposed(t);
}

class RotatedStorage final : public WeightStorage {
 public:
  Weight add(const Matrix& m) {
    AlignedVector<float>& buf = buffers_.emplace_back(m.v.size());
    for (size_t i = 0; i < m.v.size(); ++i) buf[i] = float(m.v[i]);
    return Weight{DType::F32, m.rows, m.cols, reinterpret_cast<const uint8_t*>(buf.data())};
  }

 private:
  std::vector<AlignedVector<float>> buffers_;  // inner buffers stay put as the outer vector grows
};

}  // namespace

int ffn_hadamard_block_for(int hidden_dim) { return largest_power_of_two_dividing(hidden_dim, kMaxFfnHadamard); }

Model rotate_model(const Model& base, uint64_t seed) {
  const ModelConfig& c = base.config;
  if (c.ffn_hadamard_block != 0) throw Error(ErrorCode::kInvalidArgument, "the model is already rotated");
  const ResidualRotation q(c.dim, seed);
  const int ffn_block = ffn_hadamard_block_for(c.hidden_dim);
  // Per-head value rotations need a power-of-two head width.
  const bool rotate_values = (c.head_dim & (c.head_dim - 1)) == 0;
  auto storage = std::make_unique<RotatedStorage>();

  Model out;
  out.config = c;
  out.config.tied_embeddings = false;
  out.config.ffn_hadamard_block = ffn_block;
  const std::vector<float> ones(size_t(c.dim), 1.0f);
  out.final_norm = ones;

  Matrix embedding = to_double(base.token_embedding);
  Matrix head = to_double(base.lm_head);
  scale_columns(head, base.final_norm);
  rotate_rows(embedding, q);
  rotate_rows(head, q);
  out.token_embedding = storage->add(embedding);
  out.lm_head = storage->add(head);

  for (const LayerWeights& w : base.layers) {
    LayerWeights& o = out.layers.emplace_back();
    o.attn_norm = ones;
    o.ffn_norm = ones;
    auto reads_stream = [&](const Weight& src, const std::vector<float>& gamma) {
      Matrix m = to_double(src);
      scale_columns(m, gamma);
      rotate_rows(m, q);
      return m;
    };
    Matrix wv = reads_stream(w.wv, w.attn_norm);
    Matrix wo = to_double(w.wo);
    if (rotate_values) {
      hadamard_column_blocks(wv, c.head_dim);
      hadamard_row_blocks(wo, c.head_dim);
    }
    rotate_columns(wo, q);
    Matrix down = to_double(w.w_down);
    hadamard_row_blocks(down, ffn_block);
    rotate_columns(down, q);
    o.wq = storage->add(reads_stream(w.wq, w.attn_norm));
    o.wk = storage->add(reads_stream(w.wk, w.attn_norm));
    o.wv = storage->add(wv);
    o.wo = storage->add(wo);
    o.w_gate = storage->add(reads_stream(w.w_gate, w.ffn_norm));
    o.w_up = storage->add(reads_stream(w.w_up, w.ffn_norm));
    o.w_down = storage->add(down);
  }
  out.storage.push_back(std::move(storage));
  return out;
}

}  // namespace tidal
