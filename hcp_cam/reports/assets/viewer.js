/* hcp-cam report viewer: NiiVue on one canvas, one scene at a time (see hcp_cam/reports/viewer.py).
 * State for tests and curious readers: the viewer element's data-state is idle | loading | ready | error,
 * data-scene the id of the scene drawn; window.hcpViewers maps element ids to {nv, show(index)}. */
(function () {
  "use strict";
  window.hcpViewers = window.hcpViewers || {};

  function fmt(x, digits) {
    return Number.isFinite(x) ? x.toFixed(digits) : "n/a";
  }

  function setup(root) {
    const q = (name) => root.querySelector('[data-nv="' + name + '"]');
    const status = q("status");
    const fail = (message) => {
      status.textContent = message;
      root.dataset.state = "error";
    };
    if (typeof niivue === "undefined") {
      fail("The viewer's script did not load; the figures on this page still show every map.");
      return;
    }
    if (!document.createElement("canvas").getContext("webgl2")) {
      fail("This browser has no WebGL2, so the viewer cannot draw; the figures on this page still show every map.");
      return;
    }
    const scenes = JSON.parse(document.getElementById(root.id + "-scenes").textContent);
    const canvas = q("canvas");
    const sceneSelect = q("scene");
    const layoutSelect = q("layout");
    const threshold = q("threshold");
    const opacity = q("opacity");
    const outlineBox = q("outlines");
    let current = null;

    const nv = new niivue.Niivue({
      isColorbar: true,
      logLevel: "warn",
      show3Dcrosshair: true,
      crosshairWidth: 0.6,
      crosshairWidthUnit: "percent",
      crosshairColor: [0.2, 0.9, 1.0, 0.8],
      backColor: [0, 0, 0, 1],
      dragAndDropEnabled: false,
      isResizeCanvas: true,
      onLocationChange: showLocation,
    });
    nv.opts.multiplanarShowRender = niivue.SHOW_RENDER ? niivue.SHOW_RENDER.ALWAYS : 1;

    function showLocation(data) {
      if (!current || !data || !data.values) return;
      const mm = Array.from(data.mm).slice(0, 3);
      // indices in the background file's own array order (data.vox is of NiiVue's RAS-resliced grid)
      const inv = current.world_to_voxel;
      const vox = inv
        ? [0, 1, 2].map((r) => Math.round(inv[r][0] * mm[0] + inv[r][1] * mm[1] + inv[r][2] * mm[2] + inv[r][3]))
        : Array.from(data.vox).slice(0, 3).map((v) => Math.round(v));
      const values = data.values
        .map((v, i) => (current.volumes[i] ? current.volumes[i].label + " " + fmt(v.value, 3) : null))
        .filter((s) => s !== null);
      q("location").textContent =
        "x " + fmt(mm[0], 2) + ", y " + fmt(mm[1], 2) + ", z " + fmt(mm[2], 2) + " mm (RAS); voxel (" +
        vox.join(", ") + ") of " + (current.volumes[0] ? current.volumes[0].label : "the background") + ": " + values.join("; ");
      root.dataset.location = JSON.stringify({ mm: mm, voxel: vox, values: data.values.map((v) => v.value) });
    }

    function overlayIndex() {
      return current ? current.volumes.findIndex((v) => v.role === "overlay") : -1;
    }

    function applyOverlay() {
      const i = overlayIndex();
      q("threshold-value").textContent = Number(threshold.value).toFixed(2);
      q("opacity-value").textContent = Number(opacity.value).toFixed(2);
      if (i < 0 || !nv.volumes[i]) return;
      const spec = current.volumes[i];
      const top = spec.vmax > 0 ? spec.vmax : 1;
      nv.volumes[i].cal_min = Number(threshold.value) * top;
      nv.volumes[i].cal_max = top;
      nv.volumes[i].opacity = Number(opacity.value);
      nv.updateGLVolume();
    }

    function outlineControls() {
      outlineBox.textContent = "";
      current.volumes.forEach((spec, i) => {
        if (spec.role !== "outline") return;
        const label = document.createElement("label");
        const box = document.createElement("input");
        box.type = "checkbox";
        box.checked = true;
        box.addEventListener("change", () => nv.setOpacity(i, box.checked ? spec.opacity : 0));
        label.append(box, " " + spec.label);
        outlineBox.append(label);
      });
    }

    async function show(index) {
      const scene = scenes[index];
      root.dataset.state = "loading";
      status.textContent = "Loading " + scene.label + "...";
      try {
        while (nv.volumes.length) nv.removeVolume(nv.volumes[nv.volumes.length - 1]);
        current = scene;
        for (const spec of scene.volumes) {
          const image = await niivue.NVImage.loadFromBase64({
            base64: document.getElementById(spec.ref).textContent.trim(),
            name: spec.name,
            colormap: spec.colormap,
            colormapNegative: spec.colormap_negative || "",
            cal_min: spec.cal_min,
            cal_max: spec.cal_max,
            opacity: spec.opacity,
            colorbarVisible: spec.colorbar,
          });
          nv.addVolume(image);
        }
        const i = overlayIndex();
        if (i >= 0) {
          const spec = scene.volumes[i];
          threshold.value = spec.vmax > 0 ? Math.min(1, spec.cal_min / spec.vmax).toFixed(2) : 0;
          opacity.value = spec.opacity;
        }
        threshold.disabled = opacity.disabled = i < 0;
        outlineControls();
        applyOverlay();
        nv.setSliceType(Number(layoutSelect.value));
        if (scene.peak_mm) {
          nv.scene.crosshairPos = nv.mm2frac(scene.peak_mm);
          nv.updateGLVolume();
        }
        nv.createOnLocationChange();
        q("note").textContent = scene.note || "";
        status.textContent = "";
        root.dataset.scene = scene.id;
        root.dataset.state = "ready";
      } catch (err) {
        console.error(err);
        fail("Could not show " + scene.label + ": " + err);
      }
    }

    sceneSelect.addEventListener("change", () => show(Number(sceneSelect.value)));
    layoutSelect.addEventListener("change", () => nv.setSliceType(Number(layoutSelect.value)));
    threshold.addEventListener("input", applyOverlay);
    opacity.addEventListener("input", applyOverlay);
    window.hcpViewers[root.id] = { nv: nv, show: show, scenes: scenes };
    nv.attachToCanvas(canvas).then(() => show(0), (err) => fail("WebGL2 set-up failed: " + err));
  }

  document.querySelectorAll(".viewer").forEach(setup);
})();
