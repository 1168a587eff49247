/* Local-mode chat page: talks to /local/send on this server only. */
(function () {
  "use strict";
  var who, where, log;
  function add(cls, name, text) {
    var row = document.createElement("div");
    row.className = "msg " + cls;
    var b = document.createElement("b"); b.textContent = name + "：";
    var t = document.createElement("span"); t.textContent = text;
    row.appendChild(b); row.appendChild(t); log.appendChild(row); log.scrollTop = log.scrollHeight;
  }
  function load() {
    fetch("/local/persons").then(function (r) { return r.json(); }).then(function (d) {
      d.persons.forEach(function (p) {
        var o = document.createElement("option"); o.value = p.id;
        o.textContent = p.name + "（" + p.unit + "，" + (p.role_name || p.role) + "）"; who.appendChild(o);
      });
      d.groups.forEach(function (g) {
        var o = document.createElement("option"); o.value = g.id; o.textContent = "群：" + g.name; where.appendChild(o);
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    who = document.getElementById("who"); where = document.getElementById("where"); log = document.getElementById("log");
    load();
    document.getElementById("chat").addEventListener("submit", function (e) {
      e.preventDefault();
      var input = document.getElementById("text"), text = input.value.trim();
      if (!text) { return; }
      add("me", who.options[who.selectedIndex].textContent.split("（")[0], text);
      input.value = "";
      fetch("/local/send", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ person_id: who.value, text: text, group_id: where.value || null }) })
        .then(function (r) { return r.json(); })
        .then(function (d) { (d.replies || []).forEach(function (x) { add("bot", "助手", x.text); });
                             if (d.detail) { add("bot", "系统", d.detail); } });
    });
    document.getElementById("inbox").addEventListener("click", function () {
      fetch("/local/inbox?person_id=" + encodeURIComponent(who.value)).then(function (r) { return r.json(); })
        .then(function (d) {
          if (!d.messages.length) { add("bot", "推送", "暂无推送。"); }
          d.messages.forEach(function (m) { add("bot", "推送（" + (m.kind_name || m.kind) + "，" + (m.status_name || m.status) + "）", m.text); });
        });
    });
  });
})();
