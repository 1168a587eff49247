/* 群治看板 charts: data comes from /dashboard/api/charts.json on this server. */
(function () {
  "use strict";
  window.qunzhiCharts = {};
  function init(id, option) {
    var el = document.getElementById(id);
    if (!el || !window.echarts) { return; }
    var chart = window.echarts.init(el, null, { renderer: "canvas" });
    option.animation = false;  // figures, not a show: draw at once (and screenshots see the data)
    chart.setOption(option);
    window.qunzhiCharts[id] = chart;
    window.addEventListener("resize", function () { chart.resize(); });
  }
  function empty(list) { return !list || list.length === 0; }
  function line(days, series) {
    return {
      tooltip: { trigger: "axis" }, legend: { top: 0 }, grid: { left: 40, right: 16, top: 32, bottom: 28 },
      xAxis: { type: "category", data: days }, yAxis: { type: "value", minInterval: 1 },
      series: series.map(function (s) { return { name: s[0], type: "line", data: s[1], smooth: true, showSymbol: days.length < 40 }; })
    };
  }
  function draw(d) {
    init("chart-groups", line(d.days, [["在册群", d.groups_live], ["常设群", d.groups_protected]]));
    init("chart-cadre", line(d.days, [["中位数", d.per_cadre_median], ["最多", d.per_cadre_max]]));
    init("chart-findings", {
      tooltip: {}, grid: { left: 90, right: 16, top: 16, bottom: 24 },
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", data: d.findings.map(function (f) { return f.name; }) },
      series: [{ name: "待处理", type: "bar", data: d.findings.map(function (f) { return f.value; }) }],
      graphic: empty(d.findings) ? [{ type: "text", left: "center", top: "middle", style: { text: "暂无待处理问题" } }] : []
    });
    var labels = ["轻", "适中", "重"];
    init("chart-pulse", {
      tooltip: { trigger: "axis" }, legend: { top: 0 }, grid: { left: 40, right: 16, top: 32, bottom: 28 },
      xAxis: { type: "category", data: d.pulse_period_names || d.pulse_periods }, yAxis: { type: "value", minInterval: 1 },
      series: labels.map(function (l) { return { name: l, type: "bar", stack: "pulse", data: d.pulse[l] }; }),
      graphic: empty(d.pulse_periods) ? [{ type: "text", left: "center", top: "middle", style: { text: "回答不足，暂不显示" } }] : []
    });
    document.body.setAttribute("data-charts-ready", "1");
  }
  // Weekly trends (趋势, a unit's page): the figures are the page's own, in #trend-data, the same
  // as the tables beside the charts.
  function drawTrends(el) {
    var d = JSON.parse(el.textContent), x = d.labels;
    function bars(series) {
      var o = line(x, []);
      o.series = series.map(function (s) { return { name: s[0], type: "bar", data: s[1] }; });
      return o;
    }
    init("chart-t-groups", line(x, [["在册群", d.groups]]));
    init("chart-t-cadre", line(x, [["中位数", d.per_cadre_median], ["最多", d.per_cadre_max]]));
    var ritual = line(x, [["留痕占比（%）", d.ritual_share]]);
    ritual.yAxis = { type: "value", min: 0, max: 100, axisLabel: { formatter: "{value}%" } };
    init("chart-t-ritual", ritual);
    init("chart-t-actions", bars([["解散", d.dissolved], ["保留", d.kept], ["恢复", d.restored], ["合并", d.merged]]));
    var fb = [["负担脉搏回答", d.pulse_answers], ["“这个群没用”票数", d.useless_votes]];
    if (d.unit === null) { fb.push(["形式主义反映", d.formalism_reports]); }
    init("chart-t-feedback", bars(fb));
    document.body.setAttribute("data-charts-ready", "1");
  }
  // Phone width: every table can stack into cards; each cell carries its column's name. Tables
  // beside a chart (class keep) stay tables and scroll inside their own box.
  function stackTables() {
    Array.prototype.forEach.call(document.querySelectorAll("table:not(.keep)"), function (t) {
      var heads = Array.prototype.map.call(t.querySelectorAll("thead th"), function (th) { return th.textContent.trim(); });
      if (!heads.length) { return; }
      t.classList.add("stack");
      Array.prototype.forEach.call(t.querySelectorAll("tbody tr"), function (tr) {
        Array.prototype.forEach.call(tr.children, function (td, i) {
          if (heads[i] && !td.hasAttribute("data-label")) { td.setAttribute("data-label", heads[i]); }
        });
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    stackTables();
    var trend = document.getElementById("trend-data");
    if (trend) { drawTrends(trend); return; }
    if (!document.querySelector("[data-chart]")) { return; }
    fetch("/dashboard/api/charts.json", { credentials: "same-origin" })
      .then(function (r) { return r.json(); }).then(draw);
  });
})();
