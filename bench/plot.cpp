#include "plot.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "metrics.h"

namespace tidal::bench {

namespace {

// A gnuplot single-quoted string: '' stands for one quote.
std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

void cdf_block(std::ostringstream& out, const std::string& name, std::vector<double> values_s) {
  std::sort(values_s.begin(), values_s.end());
  out << "$" << name << " << EOD\n";
  for (size_t i = 0; i < values_s.size(); ++i)
    out << values_s[i] * 1000 << " " << static_cast<double>(i + 1) / static_cast<double>(values_s.size()) << "\n";
  if (values_s.empty()) out << "0 0\n";  // gnuplot refuses to plot an empty block
  out << "EOD\n";
}

bool gnuplot_available() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':'))
    if (!dir.empty() && access((dir + "/gnuplot").c_str(), X_OK) == 0) return true;
  return false;
}

// The gnuplot program, data inline as datablocks, so no temporary files.
std::string plot_script(const std::vector<RequestRecord>& records, const std::string& png_path) {
  std::vector<double> ttft, tpot, itl, e2el;
  for (const auto& r : records) {
    if (!r.success) continue;
    ttft.push_back(r.ttft_s);
    if (r.output_tokens() > 1) tpot.push_back(tpot_s(r));
    itl.insert(itl.end(), r.itl_s.begin(), r.itl_s.end());
    e2el.push_back(r.latency_s);
  }
  std::ostringstream out;
  cdf_block(out, "ttft", ttft);
  cdf_block(out, "tpot", tpot);
  cdf_block(out, "itl", itl);
  cdf_block(out, "e2el", e2el);
  out << "$tput << EOD\n";
  const auto buckets = per_second(records);
  for (size_t i = 0; i < buckets.size(); ++i)
    out << i << " " << buckets[i].output_tokens << " " << buckets[i].concurrent_requests << "\n";
  if (buckets.empty()) out << "0 0 0\n";
  out << "EOD\n";

  out << "set terminal pngcairo size 1500,900 font 'sans,10'\n"
      << "set output " << quoted(png_path) << "\n"
      << "set multiplot layout 2,3 title 'tidal-bench'\n"
      << "set grid\nset key off\nset yrange [0:1]\nset ylabel 'cumulative fraction'\n";
  const std::pair<const char*, const char*> cdfs[] = {
      {"ttft", "TTFT CDF"}, {"tpot", "TPOT CDF"}, {"itl", "ITL CDF (all gaps)"}, {"e2el", "E2E latency CDF"}};
  for (const auto& [name, title] : cdfs)
    out << "set title '" << title << "'\nset xlabel 'ms'\nplot $" << name << " using 1:2 with steps lw 2\n";
  out << "set title 'Throughput over time'\nset autoscale y\nset xlabel 's since first request'\n"
      << "set ylabel 'output tokens/s'\nset y2label 'requests active in the second'\nset y2tics\nset key top left\n"
      << "plot $tput using 1:2 with steps lw 2 title 'output tok/s', "
      << "$tput using 1:3 axes x1y2 with steps lw 1 title 'requests active'\n"
      << "unset multiplot\n";
  return out.str();
}

}  // namespace

std::string write_plot(const std::vector<RequestRecord>& records, const std::string& png_path) {
  if (!gnuplot_available()) return "gnuplot is not installed (apt-get install gnuplot-nox)";
  FILE* pipe = popen("gnuplot", "w");
  if (!pipe) return "cannot start gnuplot";
  const std::string script = plot_script(records, png_path);
  std::fwrite(script.data(), 1, script.size(), pipe);
  const int status = pclose(pipe);
  if (status != 0) return "gnuplot failed (exit status " + std::to_string(status) + ")";
  return {};
}

}  // namespace tidal::bench
