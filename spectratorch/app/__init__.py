"""The inspectors' page: choose an exported model, drop a file of spectra, read and download the predictions.

``spectratorch app [--models DIR] [--port P]`` starts :mod:`spectratorch.app.page` with Streamlit on localhost
(the optional extra ``spectratorch[app]``). The page and its helpers run on onnxruntime, numpy and pandas only:
nothing here imports torch or lightning, even indirectly (a test runs the page with both blocked).

- :mod:`~spectratorch.app.catalog`: the ``.onnx`` models of a folder and what their names and metadata say;
- :mod:`~spectratorch.app.upload`: an uploaded file (dataset or zip of instrument exports) onto disk, checked;
- :mod:`~spectratorch.app.isolate`: an upload read and predicted in a child process with memory and time limits;
- :mod:`~spectratorch.app.occlusion`: which wavelengths drove a prediction, by batched occlusion;
- :mod:`~spectratorch.app.launch`: the ``streamlit run`` command the CLI starts;
- :mod:`~spectratorch.app.page`: the Streamlit script itself.
"""
