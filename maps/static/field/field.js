/* The grid worker's phone page (/field): sign in with the key, see one's grids, record
 * today's patrol, report an event where one stands (or where one taps), move one's open
 * events along their path. Every call is the service's own API with the key in a header;
 * the key stays in this tab's sessionStorage. The page's paths, kinds and categories come
 * from the service in <script id="field-config" type="application/json">. */
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("field-config").textContent);
  var state = { key: null, map: null, grids: [], layer: null, marker: null, where: null,
                events: [] };
  var field = window.field = { ready: false, state: state };

  function $(id) { return document.getElementById(id); }

  function say(text, kind) {
    var box = $("status");
    box.textContent = text;
    box.className = kind || "";
    box.style.display = "block";
  }

  function api(method, path, body, headers) {
    var h = { "X-API-Key": state.key, "Accept": "application/json" };
    Object.keys(headers || {}).forEach(function (k) { h[k] = headers[k]; });
    if (body !== undefined) { h["Content-Type"] = "application/json"; }
    return fetch(path, { method: method, headers: h,
                         body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (r) {
        return r.text().then(function (text) {
          var data = null;
          try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
          if (!r.ok) {
            var why = data && (data.detail || data.description || data.message) || r.status;
            var err = new Error(typeof why === "string" ? why : JSON.stringify(why));
            err.status = r.status;
            throw err;
          }
          return { data: data, etag: r.headers.get("ETag") };
        });
      });
  }

  function today() {
    var d = new Date(Date.now() + 8 * 3600 * 1000);  // China time
    return d.toISOString().slice(0, 10);
  }

  function fill(select, values, labels) {
    select.innerHTML = "";
    values.forEach(function (v) {
      var o = document.createElement("option");
      o.value = v;
      o.textContent = labels && labels[v] ? labels[v] : v;
      select.appendChild(o);
    });
  }

  function setWhere(lon, lat, how) {
    state.where = [lon, lat];
    if (state.marker) { state.marker.setLatLng([lat, lon]); }
    else if (state.map) { state.marker = L.marker([lat, lon]).addTo(state.map); }
    $("where").textContent = "位置：" + lon.toFixed(5) + ", " + lat.toFixed(5) + "（" + how + "）";
  }
  field.setWhere = setWhere;

  function loadGrids() {
    return api("GET", "/collections?f=json").then(function (r) {
      var names = r.data.collections.map(function (c) { return c.id; })
        .filter(function (id) { return id === "grids" || id.indexOf("grids__") === 0; });
      return Promise.all(names.map(function (n) {
        return api("GET", "/collections/" + n + "/items?f=json&limit=1000")
          .then(function (p) { return p.data.features; })
          .catch(function () { return []; });
      }));
    }).then(function (lists) {
      var features = [].concat.apply([], lists);
      state.grids = features;
      var codes = features.map(function (f) { return String(f.properties.code); });
      fill($("patrol-grid"), codes);
      if (!state.map) {
        state.map = L.map("map", { zoomControl: true, attributionControl: false });
        state.map.on("click", function (e) { setWhere(e.latlng.lng, e.latlng.lat, "地图选点"); });
      }
      if (state.layer) { state.map.removeLayer(state.layer); }
      state.layer = L.geoJSON(features, {
        style: { color: "#1f5d99", weight: 2, fillOpacity: 0.08 },
        onEachFeature: function (f, layer) { layer.bindTooltip(String(f.properties.code)); }
      }).addTo(state.map);
      if (features.length) { state.map.fitBounds(state.layer.getBounds(), { padding: [8, 8] }); }
      else { state.map.setView([30.9, 110.8], 9); }
      $("grid-count").textContent = "我的网格 " + features.length + " 个";
    });
  }

  function stepsFor(kind, from) {
    return config.paths.filter(function (s) { return s.kind === kind && s.from === from; });
  }

  function renderEvents() {
    var list = $("events");
    list.innerHTML = "";
    var open = state.events.filter(function (f) {
      return config.done.indexOf(f.properties.state) < 0;
    });
    $("event-count").textContent = "未办结 " + open.length + " 件";
    open.forEach(function (f) {
      var p = f.properties;
      var div = document.createElement("div");
      div.className = "event";
      div.setAttribute("data-id", String(f.id));
      var title = document.createElement("div");
      title.textContent = (config.kinds[p.kind] || p.kind) + " · " +
        (config.states[p.state] || p.state) + (p.summary ? " · " + p.summary : "");
      var meta = document.createElement("div");
      meta.className = "meta";
      meta.textContent = String(f.id) + " · 网格 " + (p.grid || "-") +
        (p.category ? " · " + p.category : "");
      div.appendChild(title);
      div.appendChild(meta);
      stepsFor(p.kind, p.state).forEach(function (s) {
        var b = document.createElement("button");
        b.className = "small";
        b.textContent = s.label_zh;
        b.setAttribute("data-action", s.action);
        b.addEventListener("click", function () { move(f, s); });
        div.appendChild(b);
      });
      list.appendChild(div);
    });
  }

  function loadEvents() {
    return api("GET", "/collections/events/items?f=json&limit=1000").then(function (r) {
      state.events = r.data.features || [];
      renderEvents();
    });
  }

  function move(feature, step) {
    var body = { state: step.to };
    if (step.note_required) {
      var note = window.prompt(step.label_zh + "：请填写说明");
      if (!note) { say("需要填写说明", "error"); return; }
      body.note = note;
    }
    var version = feature.properties.version || 1;
    api("PATCH", "/collections/events/items/" + encodeURIComponent(feature.id), body,
        { "If-Match": '"' + version + '"' })
      .then(function (r) {
        say("已" + step.label_zh + "：" + feature.id + "（" + (r.data.state_zh || "") + "）", "ok");
        return loadEvents();
      })
      .catch(function (e) {
        say((e.status === 412 ? "事件已被他人更新，已刷新：" : "未能办理：") + e.message, "error");
        return loadEvents();
      });
  }

  function patrol() {
    var grid = $("patrol-grid").value;
    if (!grid) { say("没有可巡查的网格", "error"); return; }
    api("POST", "/collections/patrols/items", { grid: grid, date: today() })
      .then(function () { say("已记录今日巡查：网格 " + grid + "，" + today(), "ok"); })
      .catch(function (e) { say("未能记录巡查：" + e.message, "error"); });
  }

  function report() {
    if (!state.where) { say("请先取得位置：使用当前位置，或在地图上点选", "error"); return; }
    var body = { type: "Feature",
                 geometry: { type: "Point", coordinates: state.where },
                 properties: { kind: $("kind").value, category: $("category").value,
                               summary: $("summary").value || null } };
    api("POST", "/collections/events/items", body)
      .then(function (r) {
        say("已上报 " + r.data.id + "（网格 " + (r.data.properties.grid || "-") + "）", "ok");
        $("summary").value = "";
        return loadEvents();
      })
      .catch(function (e) { say("未能上报：" + e.message, "error"); });
  }

  function locate() {
    if (!navigator.geolocation) { say("本机无法定位，请在地图上点选", "error"); return; }
    say("正在定位…");
    navigator.geolocation.getCurrentPosition(function (pos) {
      setWhere(pos.coords.longitude, pos.coords.latitude, "当前位置");
      say("已取得当前位置", "ok");
    }, function () { say("定位失败，请在地图上点选", "error"); },
    { enableHighAccuracy: true, timeout: 10000 });
  }

  function start(key) {
    state.key = key;
    return api("GET", "/collections?f=json").then(function () {
      sessionStorage.setItem("gisgrid-key", key);
      $("signin").classList.add("hidden");
      $("work").classList.remove("hidden");
      return Promise.all([loadGrids(), loadEvents()]);
    }).then(function () {
      field.ready = true;
      say("已登录", "ok");
    }).catch(function (e) {
      sessionStorage.removeItem("gisgrid-key");
      state.key = null;
      say("登录失败：" + e.message, "error");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    fill($("kind"), Object.keys(config.kinds), config.kinds);
    fill($("category"), config.categories);
    $("signin-button").addEventListener("click", function () { start($("key").value.trim()); });
    $("patrol-button").addEventListener("click", patrol);
    $("locate-button").addEventListener("click", locate);
    $("report-button").addEventListener("click", report);
    $("refresh-button").addEventListener("click", loadEvents);
    var saved = sessionStorage.getItem("gisgrid-key");
    if (saved) { start(saved); }
  });
})();
