/* gis-grid map page helpers (served with the page; no external dependency but Leaflet
 * and Leaflet.markercluster, vendored next to this file).
 *
 * The page's script (written by maps/interactive.py) calls:
 *   gisgrid.features(cfg, geojson)  a vector layer (polygons, lines or canvas circles)
 *   gisgrid.cluster(cfg, geojson)   a clustered layer of small CSS badges (divIcons)
 *   gisgrid.control(map, html, position, className)  a static HTML box (title, legend)
 *   gisgrid.done(map)               marks the page ready (window.gisgrid.ready = true,
 *                                   gisgrid.readyAt = ms since navigation started)
 * Popups and tooltips are built only when opened, so thousands of features cost nothing
 * until someone points at them.
 */
(function () {
  'use strict';
  var G = window.gisgrid = window.gisgrid || {};
  G.layers = {};
  G.counts = {};
  G.ready = false;

  var ENTITIES = {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'};
  function esc(value) {
    return String(value).replace(/[&<>"']/g, function (c) { return ENTITIES[c]; });
  }
  function present(value) {
    return value !== null && value !== undefined && value !== '';
  }
  function rows(props, fields) {
    var html = '';
    for (var i = 0; i < fields.length; i++) {
      var value = props[fields[i][0]];
      if (present(value)) {
        html += '<tr><th>' + esc(fields[i][1]) + '</th><td>' + esc(value) + '</td></tr>';
      }
    }
    return html;
  }
  function heading(props, cfg) {
    var title = cfg.title ? props[cfg.title] : null;
    var sub = cfg.subtitle ? props[cfg.subtitle] : null;
    var html = present(title) ? '<b>' + esc(title) + '</b>' : '';
    if (present(sub)) { html += ' <span class="gg-sub">' + esc(sub) + '</span>'; }
    return html;
  }
  function bind(layer, feature, cfg) {
    var props = feature.properties || {};
    if (cfg.tooltip) {
      layer.bindTooltip(function () {
        var extra = rows(props, cfg.tooltip);
        return '<div class="gg-tip">' + heading(props, cfg) +
          (extra ? '<table>' + extra + '</table>' : '') + '</div>';
      }, {sticky: cfg.kind !== 'point', direction: 'top', opacity: 0.95});
    }
    if (cfg.popup) {
      layer.bindPopup(function () {
        return '<div class="gg-popup"><div class="gg-head">' + heading(props, cfg) +
          '</div><table>' + rows(props, cfg.popup) + '</table></div>';
      }, {maxWidth: 320});
    }
  }
  function styleOf(cfg, feature) {
    var key = feature.properties ? feature.properties._s : undefined;
    var style = (key !== undefined && cfg.styles[key]) || cfg.styles[0] || {};
    if (feature.properties && feature.properties._r) {
      style = Object.assign({}, style, {radius: feature.properties._r});
    }
    return style;
  }

  /* A vector layer; points become canvas circle markers (cfg.kind === 'point'). */
  G.features = function (cfg, data) {
    var layer = L.geoJSON(data, {
      interactive: cfg.interactive !== false,
      style: function (feature) { return styleOf(cfg, feature); },
      pointToLayer: function (feature, latlng) {
        return L.circleMarker(latlng, styleOf(cfg, feature));
      },
      onEachFeature: function (feature, layer) {
        if (cfg.interactive !== false) { bind(layer, feature, cfg); }
      }
    });
    G.layers[cfg.name] = layer;
    G.counts[cfg.name] = data.features.length;
    return layer;
  };

  /* Points as small CSS badges in a marker cluster group. */
  G.cluster = function (cfg, data) {
    var group = L.markerClusterGroup({
      chunkedLoading: true,
      maxClusterRadius: cfg.radius || 45,
      showCoverageOnHover: false,
      spiderfyOnMaxZoom: true,
      disableClusteringAtZoom: cfg.disableAt || 16
    });
    var markers = L.geoJSON(data, {
      pointToLayer: function (feature, latlng) {
        var style = styleOf(cfg, feature);
        var size = style.size || 16;
        return L.marker(latlng, {
          icon: L.divIcon({
            className: 'gg-badge',
            html: '<span style="background:' + esc(style.color) + '">' +
              esc(style.letter || '') + '</span>',
            iconSize: [size, size]
          }),
          keyboard: false
        });
      },
      onEachFeature: function (feature, layer) { bind(layer, feature, cfg); }
    });
    group.addLayer(markers);
    G.layers[cfg.name] = group;
    G.counts[cfg.name] = data.features.length;
    return group;
  };

  /* A fixed box of HTML on the map (title, legend); scrolling inside it does not zoom. */
  G.control = function (map, html, position, className) {
    var Box = L.Control.extend({
      onAdd: function () {
        var div = L.DomUtil.create('div', 'gg-box ' + (className || ''));
        div.innerHTML = html;
        L.DomEvent.disableClickPropagation(div);
        L.DomEvent.disableScrollPropagation(div);
        return div;
      }
    });
    return new Box({position: position || 'bottomright'}).addTo(map);
  };

  G.done = function (map) {
    G.map = map;
    G.ready = true;
    // Milliseconds from the start of navigation until every layer is on the map.
    G.readyAt = window.performance ? performance.now() : null;
    document.documentElement.setAttribute('data-gisgrid-ready', 'true');
  };
}());
