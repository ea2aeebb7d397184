"""MS-IQA: slice-by-slice image-quality assessment of PET/CT in 3D Slicer.

A thin GUI over the ``msiqa`` engine that lives beside this file: inference in msiqa.assess,
all MRML work (nodes, layout, navigation) in msiqa.mrml, the dependency check in
msiqa.dependencies. The network runs in a worker thread; MRML is touched on the main thread.
"""

import json
import logging
import os
import queue
import threading
import time
from typing import Annotated, Optional

import qt
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLVectorVolumeNode
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.util import VTKObservationMixin

from msiqa import dependencies, mrml

DEVICES = ("auto", "cuda", "mps", "cpu")


class MSIQA(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MS-IQA Image Quality"
        self.parent.categories = ["Quality Control"]
        self.parent.dependencies = []
        self.parent.contributors = ["MS-IQA developers"]
        self.parent.helpText = (
            "Scores the quality of every axial slice of a CT, a PET/CT pair or an RGB fused volume "
            "(0 unusable ... 4 excellent) with a multi-scale CNN/transformer network, flags slices below a "
            "threshold and shows where the network looked as a heatmap overlay. Click a point of the chart "
            "or double-click a flagged slice to go there. "
            '<a href="https://github.com/msiqa/SlicerMSIQA">Documentation</a>.'
        )
        self.parent.acknowledgementText = (
            "MS-IQA follows the multi-scale fusion approach of published PET/CT image-quality work; the bundled "
            "sample study is a simulated phantom. Not for clinical use."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Add the bundled PET/CT phantom study to the Sample Data module (checked by sha256)."""
    import SampleData
    from msiqa import sample_data

    folder = sample_data.SAMPLE_DIR
    files = json.loads((folder / sample_data.INFO_FILE).read_text())["files"]
    names = (sample_data.CT_FILE, sample_data.PET_FILE)
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="MS-IQA",
        sampleName="MSIQASamplePETCT",
        thumbnailFileName=os.path.join(os.path.dirname(__file__), "Resources", "Icons", "MSIQA.png"),
        uris=[(folder / name).as_uri() for name in names],
        fileNames=[f"MSIQA_{name}" for name in names],
        nodeNames=["MSIQA sample CT", "MSIQA sample PET"],
        checksums=[f"SHA256:{files[name]['sha256']}" for name in names],
        loadFileType=["VolumeFile", "VolumeFile"],
    )


@parameterNodeWrapper
class MSIQAParameterNode:
    ctVolume: vtkMRMLScalarVolumeNode
    petVolume: vtkMRMLScalarVolumeNode
    rgbVolume: vtkMRMLVectorVolumeNode
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    batchSize: Annotated[int, WithinRange(1, 64)] = 8
    threshold: Annotated[float, WithinRange(0.0, 4.0)] = 2.0
    opacity: Annotated[float, WithinRange(0.0, 1.0)] = mrml.DEFAULT_OPACITY
    colormap: Annotated[str, Choice(list(mrml.COLORMAPS))] = mrml.COLORMAPS[0]
    showOverlay: bool = True


class MSIQAWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._guiTag = None
        self._worker = None  # (thread, cancel event, queue, start time)
        self._assessment = None
        self._results = None  # mrml.ResultNodes
        self._inputs, self._reference = {}, None  # SimpleITK images of the last run, node of its grid
        self._plotViews = []
        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.connect("timeout()", self._pollWorker)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MSIQA.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MSIQALogic()
        self.ui.progressBar.hide()
        for key, label in self.logic.deviceChoices():
            self.ui.deviceComboBox.addItem(label, key)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)
        self.ui.flaggedTable.horizontalHeader().setStretchLastSection(True)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.ui.flaggedTable.connect("cellDoubleClicked(int,int)", self.onFlaggedDoubleClicked)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        self._cancelRun()
        self._timer.stop()
        self.removeObservers()
        self._disconnectPlotViews()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self._cancelRun()
        self._clearResults()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        p = self._parameterNode
        if not (p.ctVolume or p.petVolume or p.rgbVolume):
            for role, node in mrml.preselect_inputs(slicer.mrmlScene, self.logic.dicomModality).items():
                setattr(p, f"{role}Volume", node)

    def setParameterNode(self, inputParameterNode: Optional[MSIQAParameterNode]):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._guiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterChanged)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._guiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterChanged)
            index = self.ui.deviceComboBox.findData(self._parameterNode.device)
            self.ui.deviceComboBox.setCurrentIndex(max(index, 0))
            self._onParameterChanged()

    def onDeviceChanged(self, index):
        if self._parameterNode and index >= 0:
            self._parameterNode.device = self.ui.deviceComboBox.itemData(index)

    # ------------------------------------------------------------------ state -> GUI / nodes
    def _onParameterChanged(self, caller=None, event=None):
        p = self._parameterNode
        running = self._worker is not None
        haveInput = bool(p and (p.ctVolume or p.petVolume or p.rgbVolume))
        self.ui.applyButton.enabled = running or haveInput
        self.ui.applyButton.text = "Cancel" if running else "Assess Quality"
        self.ui.modalityLabel.text = self.logic.describeInputs(p) if p else "-"
        if not (p and self._results and slicer.mrmlScene.GetNodeByID(self._results.heatmap)):
            return
        heatmap = slicer.mrmlScene.GetNodeByID(self._results.heatmap)
        if self._assessment.threshold != p.threshold:
            self._assessment = self._assessment.with_threshold(p.threshold)
            mrml.update_threshold(slicer.mrmlScene, self._results, self._assessment)
            self._showSummary()
        mrml.set_overlay(slicer.mrmlScene, heatmap, visible=p.showOverlay, opacity=p.opacity)
        mrml.set_colormap(slicer.mrmlScene, heatmap, p.colormap)

    # ------------------------------------------------------------------ running
    def onApplyButton(self):
        if self._worker is not None:
            self._cancelRun()
            self.ui.statusLabel.text = "Cancelling after the current batch..."
            return
        with slicer.util.tryWithErrorDisplay("Failed to start the assessment.", waitCursor=True):
            if not self.logic.ensureDependencies():
                self.ui.statusLabel.text = "Nothing was run: PyTorch, timm and safetensors are missing."
                slicer.util.infoDisplay("MS-IQA needs PyTorch (from the PyTorch extension), timm and safetensors. "
                                        "Click 'Assess Quality' again to install them.", "MS-IQA")
                return
            p = self._parameterNode
            self._inputs, self._reference = mrml.input_images(p.ctVolume, p.petVolume, p.rgbVolume)
            cancel, messages = threading.Event(), queue.Queue()
            settings = dict(device=p.device, batchSize=p.batchSize, threshold=p.threshold)
            thread = threading.Thread(
                target=self.logic.runInThread, args=(self._inputs, settings, messages, cancel), daemon=True
            )
            self._worker = (thread, cancel, messages, time.time())
            self.ui.progressBar.setRange(0, 0)
            self.ui.progressBar.show()
            self.ui.statusLabel.text = "Loading the model..."
            thread.start()
            self._timer.start()
            self._onParameterChanged()

    def _cancelRun(self):
        if self._worker is not None:
            self._worker[1].set()

    def _pollWorker(self):
        if self._worker is None:
            self._timer.stop()
            return
        _thread, _cancel, messages, started = self._worker
        while True:
            try:
                message = messages.get_nowait()
            except queue.Empty:
                return
            kind = message[0]
            if kind == "progress":
                done, total = message[1], message[2]
                elapsed = time.time() - started
                left = elapsed / max(done, 1) * (total - done)
                self.ui.progressBar.setRange(0, total)
                self.ui.progressBar.setValue(done)
                self.ui.statusLabel.text = f"{done} of {total} slices, about {left:.0f} s left"
                continue
            self._worker = None
            self._timer.stop()
            self.ui.progressBar.hide()
            if kind == "done":
                with slicer.util.tryWithErrorDisplay("Failed to show the results.", waitCursor=True):
                    self._showResults(message[1])
                    self.ui.statusLabel.text = f"Done in {time.time() - started:.1f} s."
            elif kind == "cancelled":
                self.ui.statusLabel.text = "Cancelled; no result was kept."
            else:
                self.ui.statusLabel.text = "The assessment failed."
                slicer.util.errorDisplay(f"The assessment failed: {message[1]}", detailedText=message[2])
            self._onParameterChanged()
            return

    # ------------------------------------------------------------------ results
    def _showResults(self, assessment):
        p = self._parameterNode
        self._assessment = assessment
        self._results = self.logic.showResults(assessment, self._reference, opacity=p.opacity, colormap=p.colormap)
        if mrml.select_layout(slicer.mrmlScene):
            slicer.app.processEvents()
        mrml.show_chart(slicer.mrmlScene, self._results.chart)
        self._connectPlotViews()
        self.ui.resultsCollapsibleButton.enabled = True
        self.ui.resultsCollapsibleButton.collapsed = False
        self._showSummary()

    def _showSummary(self):
        s = self._assessment.summary()
        self.ui.summaryLabel.text = (
            f"{s['slices']} slices, mean score {s['mean']:.2f}, lowest {s['min']:.2f} (slice {s['min_slice']}). "
            f"{s['flagged_count']} flagged below {s['threshold']:.1f}."
        )
        flagged = sorted(s["flagged_slices"], key=lambda k: float(self._assessment.scores[k]))
        self.ui.flaggedTable.setRowCount(len(flagged))
        for row, k in enumerate(flagged):
            self.ui.flaggedTable.setItem(row, 0, qt.QTableWidgetItem(str(k)))
            self.ui.flaggedTable.setItem(row, 1, qt.QTableWidgetItem(f"{float(self._assessment.scores[k]):.2f}"))

    def _clearResults(self):
        self._assessment = self._results = None
        self._disconnectPlotViews()
        self.ui.flaggedTable.setRowCount(0)
        self.ui.summaryLabel.text = "No assessment yet."
        self.ui.resultsCollapsibleButton.enabled = False

    def onFlaggedDoubleClicked(self, row, column):
        item = self.ui.flaggedTable.item(row, 0)
        if item and self._results:
            self.logic.jumpToSlice(self._results.reference, int(item.text()))

    def _connectPlotViews(self):
        layoutManager = slicer.app.layoutManager()
        for index in range(layoutManager.plotViewCount if layoutManager else 0):
            view = layoutManager.plotWidget(index).plotView()
            if view not in self._plotViews:
                view.connect("dataSelected(vtkStringArray*, vtkCollection*)", self.onPlotDataSelected)
                self._plotViews.append(view)

    def _disconnectPlotViews(self):
        for view in self._plotViews:
            view.disconnect("dataSelected(vtkStringArray*, vtkCollection*)", self.onPlotDataSelected)
        self._plotViews = []

    def onPlotDataSelected(self, dataNodeIDs, selections):
        k = mrml.slice_from_plot_selection(self._results.series, dataNodeIDs, selections, slicer.mrmlScene) if self._results else None
        if k is not None:
            self.logic.jumpToSlice(self._results.reference, k)

    def onExportButton(self):
        if not self._assessment:
            return
        path = qt.QFileDialog.getSaveFileName(
            slicer.util.mainWindow(), "Export MS-IQA report", "msiqa-report.html", "HTML (*.html)"
        )
        if path:
            with slicer.util.tryWithErrorDisplay("Failed to write the report.", waitCursor=True):
                written = self.logic.exportReport(self._assessment, self._inputs, path)
                self.ui.statusLabel.text = f"Report written to {written}"


class MSIQALogic(ScriptedLoadableModuleLogic):
    """Delegates to the msiqa engine; usable without the GUI (see MSIQATest)."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._scorers = {}

    def getParameterNode(self):
        return MSIQAParameterNode(super().getParameterNode())

    # -------------------------------------------------------------- dependencies
    def ensureDependencies(self, ask=True) -> bool:
        """Install what is missing (after asking once); never touches SimpleITK or numpy."""
        plan = dependencies.install_plan(dependencies.missing())
        if plan.empty:
            return True
        if ask and not slicer.util.confirmOkCancelDisplay(
            f"MS-IQA needs {plan.describe()}, which will be downloaded and installed now. "
            "This can take several minutes.",
            "MS-IQA: install Python packages",
        ):
            logging.info("MS-IQA: package installation declined")
            return False
        if plan.torch:
            try:
                torchLogic = slicer.modules.pytorchutils.widgetRepresentation().self().logic
            except AttributeError:
                raise RuntimeError("The PyTorch extension is needed: install 'PyTorch' from the Extensions Manager.")
            if torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=plan.torch_version) is None:
                return False
        for requirement in plan.pip:
            slicer.util.pip_install(requirement)
        return not dependencies.missing()

    def deviceChoices(self):
        """(key, label) pairs for the device combo box; GPU names when PyTorch is installed."""
        choices = {key: key.upper() if key != "auto" else "Auto" for key in DEVICES}
        if dependencies.installed_version("torch"):
            try:
                import torch

                if torch.cuda.is_available():
                    choices["cuda"] = f"CUDA: {torch.cuda.get_device_name(0)}"
                    choices["auto"] = f"Auto ({torch.cuda.get_device_name(0)})"
                if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
                    choices["mps"] = "MPS: Apple GPU"
            except Exception as error:  # a broken torch install must not break the module
                logging.warning(f"MS-IQA: could not query PyTorch devices: {error}")
        return list(choices.items())

    # -------------------------------------------------------------- inputs
    @staticmethod
    def dicomModality(node):
        """DICOM Modality of a loaded series (attribute, subject hierarchy or DICOM database)."""
        modality = mrml.modality_of_node(node)
        uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split()
        if not modality and uids and getattr(slicer, "dicomDatabase", None):
            fileName = slicer.dicomDatabase.fileForInstance(uids[0])
            modality = slicer.dicomDatabase.fileValue(fileName, "0008,0060").strip().upper() if fileName else None
        return modality or None

    def describeInputs(self, p) -> str:
        nodes = [node for node in (p.ctVolume, p.petVolume, p.rgbVolume) if node]
        return "; ".join(f"{n.GetName()}: {mrml.node_modality(n, self.dicomModality(n))}" for n in nodes) or "-"

    # -------------------------------------------------------------- running
    def run(self, images, device="auto", batchSize=8, threshold=2.0, progress=None, cancel=None):
        from msiqa.assess import Scorer, assess

        if device not in self._scorers:
            self._scorers[device] = Scorer(device=device)
        return assess(**images, device=device, batch_size=batchSize, threshold=threshold,
                      progress=progress, cancel=cancel, scorer=self._scorers[device])

    def runInThread(self, images, settings, messages, cancelEvent):
        """Worker thread body: no MRML here, everything goes back through ``messages``."""
        from msiqa.errors import Cancelled

        try:
            assessment = self.run(images, settings["device"], settings["batchSize"], settings["threshold"],
                                  progress=lambda done, total: messages.put(("progress", done, total)),
                                  cancel=cancelEvent.is_set)
            messages.put(("done", assessment))
        except Cancelled:
            messages.put(("cancelled",))
        except Exception as error:
            import traceback

            messages.put(("error", error, traceback.format_exc()))

    def showResults(self, assessment, referenceNode, opacity=mrml.DEFAULT_OPACITY, colormap=mrml.COLORMAPS[0]):
        return mrml.show_results(slicer.mrmlScene, assessment, referenceNode, app_logic=slicer.app.applicationLogic(),
                                 opacity=opacity, colormap=colormap)

    def jumpToSlice(self, referenceId, k):
        return mrml.jump_to_slice(slicer.mrmlScene, slicer.mrmlScene.GetNodeByID(referenceId), k)

    def exportReport(self, assessment, images, path):
        from msiqa import report
        from msiqa.render import SliceRenderer

        pictures, maps = report.collect_lowest(assessment, SliceRenderer(**images))
        return report.write_report(assessment, path, pictures=pictures, maps=maps,
                                   inputs={role.upper(): "Slicer scene" for role in images})


class MSIQATest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SampleStudyOnCPU()

    def test_SampleStudyOnCPU(self):
        import SampleData
        import numpy as np

        registerSampleData()
        self.delayDisplay("Loading the sample study")
        ct, pet = SampleData.downloadSamples("MSIQASamplePETCT")
        logic = MSIQALogic()
        roles = mrml.preselect_inputs(slicer.mrmlScene, logic.dicomModality)
        self.assertEqual((roles["ct"], roles["pet"]), (ct, pet))
        images, reference = mrml.input_images(ct, pet)
        before = slicer.util.arrayFromVolume(ct).copy()

        self.delayDisplay("Assessing on the CPU")
        assessment = logic.run(images, device="cpu", batchSize=8)
        self.assertEqual(len(assessment.scores), before.shape[0])
        results = logic.showResults(assessment, reference)
        again = logic.showResults(assessment, reference)
        self.assertIsNone(slicer.mrmlScene.GetNodeByID(results.heatmap))
        self.assertEqual(len(mrml.find_results(slicer.mrmlScene, reference)), 5)

        heatmap = slicer.util.arrayFromVolume(slicer.mrmlScene.GetNodeByID(again.heatmap))
        self.assertEqual(heatmap.shape, before.shape)
        self.assertTrue(0.0 <= heatmap.min() and heatmap.max() <= 1.0)
        self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(ct), before))
        table = slicer.mrmlScene.GetNodeByID(again.table).GetTable()
        self.assertEqual(table.GetNumberOfRows(), before.shape[0])
        k = mrml.slice_index_from_plot_point(slicer.mrmlScene.GetNodeByID(again.series), 3)
        logic.jumpToSlice(reference.GetID(), k)
        self.delayDisplay("Test passed")
