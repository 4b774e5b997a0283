// Filter a long table in place: a search box (any words, all must match) and select boxes on data attributes.
(function () {
  "use strict";
  document.querySelectorAll(".filters[data-filter]").forEach(function (bar) {
    const name = bar.dataset.filter;
    const table = document.getElementById(name);
    const search = document.getElementById(name + "-search");
    const light = document.getElementById(name + "-light");
    const files = document.getElementById(name + "-files");
    const count = document.getElementById(name + "-count");
    const rows = Array.from(table.tBodies[0].rows);
    function apply() {
      const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
      let shown = 0;
      rows.forEach(function (row) {
        const text = (row.dataset.search || row.textContent).toLowerCase();
        const ok = words.every(function (w) { return text.indexOf(w) >= 0; })
          && (!light || !light.value || row.dataset.light === light.value)
          && (!files || !files.value || row.dataset.files === files.value);
        row.hidden = !ok;
        shown += ok ? 1 : 0;
      });
      count.textContent = "显示 " + shown + " / " + rows.length;
    }
    [search, light, files].forEach(function (control) { if (control) control.addEventListener("input", apply); });
    apply();
  });
})();
