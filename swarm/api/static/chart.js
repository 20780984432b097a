"use strict";
// The small activity chart: jobs ended per minute (stacked bars by final state) and their
// median latency, submit to end (a line on its own scale). Plain SVG built with the DOM;
// every text goes in through textContent.

window.swarmChart = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const H = 150; // pixels; the width is the card's, read at each drawing
  const M = { left: 30, right: 50, top: 12, bottom: 20 };
  const STACK = ["completed", "failed", "stopped"];

  function svg(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function seconds(value) {
    if (value < 1) return `${Math.round(value * 1000)} ms`;
    if (value < 120) return `${value.toFixed(value < 10 ? 1 : 0)} s`;
    return `${Math.round(value / 60)} min`;
  }

  function minuteLabel(iso) {
    return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // `minutes`: [{start, completed, failed, stopped, latency_median, latency_max}], oldest first.
  function draw(target, minutes) {
    last = [target, minutes];
    const W = Math.max(320, Math.round(target.getBoundingClientRect().width) || 960);
    target.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const plotW = W - M.left - M.right;
    const plotH = H - M.top - M.bottom;
    const n = Math.max(1, minutes.length);
    const slot = plotW / n;
    const total = (m) => STACK.reduce((sum, key) => sum + (m[key] || 0), 0);
    const maxCount = Math.max(1, ...minutes.map(total));
    const latencies = minutes.map((m) => m.latency_median).filter((v) => v !== null && v !== undefined);
    const maxLatency = Math.max(0.001, ...latencies);
    const y = (count) => M.top + plotH - (count / maxCount) * plotH;
    const yLatency = (value) => M.top + plotH - (value / maxLatency) * plotH;

    const parts = [
      svg("line", { class: "axis", x1: M.left, y1: M.top + plotH, x2: W - M.right, y2: M.top + plotH }),
      svg("line", { class: "grid", x1: M.left, y1: M.top, x2: W - M.right, y2: M.top }),
      svg("text", { class: "tick", x: M.left - 4, y: M.top + 4, "text-anchor": "end" }, String(maxCount)),
      svg("text", { class: "tick", x: M.left - 4, y: M.top + plotH, "text-anchor": "end" }, "0"),
      svg("text", { class: "tick latency", x: W - M.right + 4, y: M.top + 4 }, latencies.length ? seconds(maxLatency) : ""),
    ];
    if (minutes.length) {
      parts.push(
        svg("text", { class: "tick", x: M.left, y: H - 4 }, minuteLabel(minutes[0].start)),
        svg("text", { class: "tick", x: W - M.right, y: H - 4, "text-anchor": "end" }, "now"),
      );
    }

    const points = [];
    minutes.forEach((m, i) => {
      const x = M.left + i * slot;
      const group = svg("g", { class: "minute", "data-ended": total(m) });
      let base = 0;
      for (const key of STACK) {
        const count = m[key] || 0;
        if (!count) continue;
        group.append(
          svg("rect", {
            class: `bar ${key}`,
            x: (x + slot * 0.15).toFixed(1),
            y: y(base + count).toFixed(1),
            width: Math.max(1, slot * 0.7).toFixed(1),
            height: Math.max(1, y(base) - y(base + count)).toFixed(1),
          }),
        );
        base += count;
      }
      const latency =
        m.latency_median === null || m.latency_median === undefined
          ? ""
          : ` · latency median ${seconds(m.latency_median)}, max ${seconds(m.latency_max)}`;
      const counts = STACK.filter((key) => m[key]).map((key) => `${m[key]} ${key}`).join(", ");
      // A transparent full-height rect makes the whole minute hoverable for its tooltip.
      group.append(
        svg("rect", { class: "hover", x: x.toFixed(1), y: M.top, width: slot.toFixed(1), height: plotH }),
        svg("title", {}, `${minuteLabel(m.start)} · ${counts || "nothing ended"}${latency}`),
      );
      parts.push(group);
      if (latency) points.push(`${(x + slot / 2).toFixed(1)},${yLatency(m.latency_median).toFixed(1)}`);
    });
    if (points.length > 1) parts.push(svg("polyline", { class: "latency", points: points.join(" ") }));
    for (const point of points) {
      const [cx, cy] = point.split(",");
      parts.push(svg("circle", { class: "latency", cx, cy, r: 2.5 }));
    }
    if (!minutes.some(total)) {
      parts.push(
        svg("text", { class: "empty", x: M.left + plotW / 2, y: M.top + plotH / 2, "text-anchor": "middle" }, "no job ended in this window"),
      );
    }
    target.replaceChildren(...parts);
  }

  let last = null;
  window.addEventListener("resize", () => {
    if (last) draw(...last);
  });

  return { draw };
})();
