// hashnb: glue between the vendored @jupyter-widgets/html-manager and this book (our file,
// not upstream). Loaded after require.js and before embed-amd.js (nb_ipywidgets_js in
// _config.yml); see README.md in this folder.
(function () {
  // 1. Module paths. embed-amd.js defines AMD modules named "@jupyter-widgets/..." and each
  //    derives its webpack public path (where its Font Awesome fonts are fetched from) from
  //    its module URL, which require.js resolves relative to the *page* by default (404s on
  //    every chapter). Map them to the folder of this script, where the fonts are.
  var script = document.currentScript;
  if (script && script.src && typeof require !== "undefined" && require.config) {
    var dir = script.src.replace(/[?#].*$/, "").replace(/\/[^\/]*$/, "");
    require.config({
      paths: { "@jupyter-widgets": dir, "@jupyter-widgets/html-manager/dist": dir },
    });
  }

  // 2. MathJax 3. The widget manager typesets HTML/Label widgets with the MathJax 2 API
  //    (MathJax.Hub.Queue), which MathJax 3 lacks ("Cannot read properties of undefined
  //    (reading 'Queue')"). Forward those calls to MathJax 3. Widgets render on window
  //    "load"; this listener is registered first, and MathJax (deferred) has run by then.
  function shim() {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.startup) {
      return;
    }
    mj.Hub = {
      Queue: function (job) {
        var node = job && job[2];
        if (node && mj.typesetPromise) {
          mj.startup.promise.then(function () { return mj.typesetPromise([node]); })
            .catch(function (err) { console.warn("MathJax typeset of a widget failed", err); });
        }
      },
    };
  }
  if (document.readyState === "complete") {
    shim();
  } else {
    window.addEventListener("load", shim);
  }
})();
