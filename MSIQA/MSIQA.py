"""MS-IQA: slice-by-slice image-quality assessment of PET/CT in 3D Slicer.

A thin GUI over the ``msiqa`` engine that ships beside this file. The network runs in a child
process of Slicer's own Python (msiqa.runner: Slicer's main thread holds the GIL while it
idles, so an engine thread inside Slicer would crawl, and a crash there would take the scene
with it); a 100 ms timer polls the child's progress. Results are read back into MRML on the
main thread with msiqa.mrml. The device list comes from a child too: opening the module never
imports torch.
"""

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
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

from MSIQALib.engine_import import import_engine_beside

import_engine_beside(os.path.dirname(os.path.abspath(__file__)))  # never another installed msiqa

from msiqa import dependencies, devices, mrml, runner  # noqa: E402
from msiqa.errors import Cancelled  # noqa: E402
from msiqa.progress import STAGES  # noqa: E402

MINIMUM_SLICER = (5, 10)  # Python 3.12: the runner reads the child's output without blocking on every OS
POLL_MS = 100


class MSIQA(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MS-IQA Image Quality"
        self.parent.categories = ["Quantification"]
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
    device: Annotated[str, Choice(list(devices.KEYS))] = "auto"
    batchSize: Annotated[int, WithinRange(1, 64)] = 8
    threshold: Annotated[float, WithinRange(0.0, 4.0)] = 2.0
    opacity: Annotated[float, WithinRange(0.0, 1.0)] = mrml.DEFAULT_OPACITY
    colormap: Annotated[str, Choice(list(mrml.COLORMAPS))] = mrml.COLORMAPS[0]
    showOverlay: bool = True


@dataclass
class RunInfo:
    """What a run was started for: the reference node (the grid assessed) and the input nodes."""

    reference: str  # node ID
    inputs: dict = field(default_factory=dict)  # "ct"/"pet"/"rgb" -> node ID
    started: float = field(default_factory=time.time)
    assessing: Optional[float] = None  # when the first slice batch started


class MSIQAWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._guiTag = None
        self._run = None  # runner.AssessmentRun in flight
        self._runInfo = None  # its RunInfo
        self._deviceQuery = None  # runner.DeviceQuery in flight
        self._assessment = None  # the assessment shown
        self._shownInputs = {}  # role -> input node ID of the assessment shown (for the report)
        self._results = None  # mrml.ResultNodes
        self._plotViews = []
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.connect("timeout()", self._poll)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MSIQA.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MSIQALogic()
        self.ui.progressBar.hide()
        for key, label in devices.choices(None):
            self.ui.deviceComboBox.addItem(label, key)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)
        self.ui.flaggedTable.horizontalHeader().setStretchLastSection(True)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.ui.flaggedTable.connect("cellDoubleClicked(int,int)", self.onFlaggedDoubleClicked)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        if not self.logic.slicerIsRecentEnough():
            self.ui.statusLabel.text = (f"MS-IQA needs 3D Slicer {'.'.join(map(str, MINIMUM_SLICER))} or later; "
                                        f"this is {slicer.app.majorVersion}.{slicer.app.minorVersion}.")
            self.ui.applyButton.enabled = False
            return
        self._queryDevices()

    def cleanup(self):
        self._cancelRun()
        if self._deviceQuery is not None:
            self._deviceQuery.cancel()
            self._deviceQuery = None
        self._timer.stop()
        self.removeObservers()
        self._disconnectPlotViews()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        # A run goes on while the user is elsewhere; its results land through the logic's own
        # parameter node (see _showResults), not through this disconnected GUI.
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self._cancelRun()
        self._clearResults()
        self.logic.forgetNodes()
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

    # ------------------------------------------------------------------ devices
    def _queryDevices(self):
        """Ask a child process which devices PyTorch sees; the menu is named after them when it answers."""
        if not dependencies.installed_version("torch"):
            return  # nothing to ask yet; after installing, the next module start asks
        try:
            self._deviceQuery = runner.DeviceQuery(python=self.logic.pythonExecutable())
        except Exception as error:  # the menu keeps its plain names
            logging.warning(f"MS-IQA: could not ask for the devices: {error}")
            return
        self._timer.start()

    def _showDevices(self, info):
        for index, (key, label) in enumerate(devices.choices(info)):
            if self.ui.deviceComboBox.itemData(index) == key:  # rename in place: no index change, no signal
                self.ui.deviceComboBox.setItemText(index, label)

    # ------------------------------------------------------------------ state -> GUI / nodes
    def _onParameterChanged(self, caller=None, event=None):
        p = self._parameterNode
        running = self._run is not None
        haveInput = bool(p and (p.ctVolume or p.petVolume or p.rgbVolume))
        self.ui.applyButton.enabled = running or (haveInput and self.logic.slicerIsRecentEnough())
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
        if self._run is not None:
            self._cancelRun()
            return
        with slicer.util.tryWithErrorDisplay("Failed to start the assessment.", waitCursor=True):
            if not self.logic.ensureDependencies():
                self.ui.statusLabel.text = "Nothing was run: MS-IQA's Python packages are missing."
                slicer.util.infoDisplay("MS-IQA needs PyTorch (from the PyTorch extension) and a few Python packages. "
                                        "Click 'Assess Quality' again to install them.", "MS-IQA")
                return
            p = self._parameterNode
            nodes = {"ct": p.ctVolume, "pet": p.petVolume, "rgb": p.rgbVolume}
            self.ui.statusLabel.text = "Handing the volumes to the engine..."
            slicer.app.processEvents()
            try:
                run, reference = self.logic.startRun(nodes, device=p.device, batchSize=p.batchSize,
                                                     threshold=p.threshold, onEvent=self._onRunEvent)
            except Exception:
                self.ui.statusLabel.text = "Nothing was run."
                raise
            self._run = run
            self._runInfo = RunInfo(reference.GetID(), {role: n.GetID() for role, n in nodes.items() if n})
            self.ui.progressBar.setRange(0, 0)
            self.ui.progressBar.show()
            self._timer.start()
            self._onParameterChanged()

    def _cancelRun(self):
        """Stop a run at once (its child process goes); the scene stays as it was."""
        if self._run is not None:
            self._run.cancel()
            self._onRunFinished()

    def _poll(self):
        if self._deviceQuery is not None and self._deviceQuery.poll():
            if self._deviceQuery.info is not None:
                self._showDevices(self._deviceQuery.info)
            else:
                logging.warning(f"MS-IQA: the device query failed: {self._deviceQuery.error}")
            self._deviceQuery = None
        if self._run is not None:
            self._run.poll()  # events arrive in _onRunEvent
            if self._run.finished:
                self._onRunFinished()
        if self._run is None and self._deviceQuery is None:
            self._timer.stop()

    def _onRunEvent(self, event):
        kind, info = event.get("event"), self._runInfo
        if kind == "stage":
            text = STAGES.get(event["stage"], event["stage"]).format(inputs=", ".join(event.get("inputs", [])))
            self.ui.statusLabel.text = text[:1].upper() + text[1:] + "..."
            if event["stage"] in ("reading", "loading"):
                self.ui.progressBar.setRange(0, 0)  # busy: no count yet
        elif kind == "start":
            info.assessing = time.time()
            self.ui.progressBar.setRange(0, event["total"])
            self.ui.progressBar.setValue(0)
            self.ui.statusLabel.text = f"Assessing {event['total']} slices on {event['device']}..."
        elif kind == "progress":
            done, total = event["done"], event["total"]
            left = (time.time() - (info.assessing or info.started)) / max(done, 1) * (total - done)
            self.ui.progressBar.setValue(done)
            self.ui.statusLabel.text = f"{done} of {total} slices, about {left:.0f} s left"

    def _onRunFinished(self):
        run, info = self._run, self._runInfo
        self._run = self._runInfo = None
        self.ui.progressBar.hide()
        if run.result is not None:
            with slicer.util.tryWithErrorDisplay("Failed to show the results.", waitCursor=True):
                self._showResults(run.result, info)
                self.ui.statusLabel.text = f"Done in {time.time() - info.started:.1f} s."
        elif isinstance(run.error, Cancelled):
            self.ui.statusLabel.text = "Cancelled; no result was kept."
        else:
            self.ui.statusLabel.text = "The assessment failed."
            details = getattr(run.error, "details", "")
            extra = {"detailedText": details} if details else {}
            slicer.util.errorDisplay(f"The assessment failed: {run.error}", **extra)
        self._onParameterChanged()

    # ------------------------------------------------------------------ results
    def _showResults(self, assessment, info):
        reference = slicer.mrmlScene.GetNodeByID(info.reference)
        if reference is None:
            raise ValueError("The assessed volume was removed from the scene during the run; the result was not shown.")
        p = self.logic.getParameterNode()  # the module's settings even when the user has left the module
        if assessment.threshold != p.threshold:
            assessment = assessment.with_threshold(p.threshold)
        self._assessment, self._shownInputs = assessment, dict(info.inputs)
        self._results = self.logic.showResults(assessment, reference, opacity=p.opacity, colormap=p.colormap)
        if not p.showOverlay:
            mrml.set_overlay(slicer.mrmlScene, slicer.mrmlScene.GetNodeByID(self._results.heatmap), visible=False)
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
        self._shownInputs = {}
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
                nodes = {role: slicer.mrmlScene.GetNodeByID(node_id) for role, node_id in self._shownInputs.items()}
                written = self.logic.exportReport(self._assessment, nodes, path)
                self.ui.statusLabel.text = f"Report written to {written}"


class MSIQALogic(ScriptedLoadableModuleLogic):
    """Delegates to the msiqa engine; usable without the GUI (see MSIQATest)."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._modalities = mrml.ModalityCache(self.dicomModality)

    def getParameterNode(self):
        return MSIQAParameterNode(super().getParameterNode())

    @staticmethod
    def slicerIsRecentEnough() -> bool:
        return (slicer.app.majorVersion, slicer.app.minorVersion) >= MINIMUM_SLICER

    # -------------------------------------------------------------- dependencies
    def ensureDependencies(self, ask=True) -> bool:
        """Install what is missing (after asking, unless ``ask`` is False); never replaces what Slicer ships."""
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

    @staticmethod
    def pythonExecutable() -> str:
        """Slicer's own Python, which runs the engine's child processes (Slicer puts it on the PATH)."""
        path = shutil.which("PythonSlicer")
        if not path:
            raise RuntimeError("PythonSlicer, the Python of this Slicer, was not found on the PATH; the assessment "
                               "runs in it. Reinstall Slicer.")
        return path

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
        """"name: CT; name: PET" for the selected inputs; each node is examined once (cached)."""
        nodes = [node for node in (p.ctVolume, p.petVolume, p.rgbVolume) if node]
        return "; ".join(f"{n.GetName()}: {self._modalities(n)}" for n in nodes) or "-"

    def forgetNodes(self):
        self._modalities.clear()

    # -------------------------------------------------------------- running
    def startRun(self, nodes, device="auto", batchSize=8, threshold=2.0, onEvent=None):
        """Copy the input nodes to a temporary folder and start the engine's child process.

        ``nodes`` maps "ct", "pet", "rgb" to volume nodes (or None). Returns the started
        :class:`msiqa.runner.AssessmentRun` (poll it, or ``wait()``) and the node whose grid is assessed.
        """
        images, reference = mrml.input_images(nodes.get("ct"), nodes.get("pet"), nodes.get("rgb"))
        run = runner.AssessmentRun(images, device=device, batch_size=batchSize, threshold=threshold,
                                   python=self.pythonExecutable(), on_event=onEvent)
        del images  # start() writes them to the run's folder and keeps only the paths
        run.start()
        return run, reference

    def assess(self, ct=None, pet=None, rgb=None, device="auto", batchSize=8, threshold=2.0, timeout=None):
        """Assess and wait (for scripts and tests): returns (assessment, reference node)."""
        run, reference = self.startRun({"ct": ct, "pet": pet, "rgb": rgb}, device, batchSize, threshold)
        return run.wait(timeout), reference

    def showResults(self, assessment, referenceNode, opacity=mrml.DEFAULT_OPACITY, colormap=mrml.COLORMAPS[0]):
        return mrml.show_results(slicer.mrmlScene, assessment, referenceNode, app_logic=slicer.app.applicationLogic(),
                                 opacity=opacity, colormap=colormap)

    def jumpToSlice(self, referenceId, k):
        return mrml.jump_to_slice(slicer.mrmlScene, slicer.mrmlScene.GetNodeByID(referenceId), k)

    def exportReport(self, assessment, nodes, path):
        """The HTML report of ``assessment``, its pictures rendered from the input nodes ("ct"/"pet"/"rgb")."""
        from msiqa import report
        from msiqa.render import SliceRenderer

        if not nodes or any(node is None for node in nodes.values()):
            raise ValueError("The volumes of this assessment are no longer all in the scene; run it again to export.")
        images, _reference = mrml.input_images(nodes.get("ct"), nodes.get("pet"), nodes.get("rgb"))
        pictures, maps = report.collect_lowest(assessment, SliceRenderer(**images))
        return report.write_report(assessment, path, pictures=pictures, maps=maps,
                                   inputs={role.upper(): f"Slicer scene: {node.GetName()}" for role, node in nodes.items()})


class MSIQATest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SampleStudyOnCPU()
        self.setUp()
        self.test_CancelLeavesTheSceneAsItWas()

    def _logicWithEngine(self):
        """The logic, its Python packages installed without asking; the test is skipped, saying
        why, where they cannot be (no PyTorch extension, no network)."""
        logic = MSIQALogic()
        if not logic.slicerIsRecentEnough():
            self.skipTest(f"MS-IQA needs Slicer {'.'.join(map(str, MINIMUM_SLICER))} or later.")
        try:
            ready, why = logic.ensureDependencies(ask=False), "the installation did not complete"
        except Exception as error:
            ready, why = False, str(error)
        if not ready:
            self.skipTest(f"MS-IQA's Python packages (PyTorch, timm, ...) are not installed and could not be "
                          f"installed without asking: {why}. Nothing was tested.")
        return logic

    def _loadSample(self):
        import SampleData

        registerSampleData()
        self.delayDisplay("Loading the sample study")
        return SampleData.downloadSamples("MSIQASamplePETCT")

    def test_SampleStudyOnCPU(self):
        import numpy as np

        logic = self._logicWithEngine()
        ct, pet = self._loadSample()
        roles = mrml.preselect_inputs(slicer.mrmlScene, logic.dicomModality)
        self.assertEqual((roles["ct"], roles["pet"]), (ct, pet))
        before = slicer.util.arrayFromVolume(ct).copy()

        self.delayDisplay("Assessing on the CPU, in a child process")
        assessment, reference = logic.assess(ct, pet, device="cpu", batchSize=8, timeout=600)
        self.assertEqual(reference, ct)
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

    def test_CancelLeavesTheSceneAsItWas(self):
        logic = self._logicWithEngine()
        ct, pet = self._loadSample()
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        events = []
        run, _reference = logic.startRun({"ct": ct, "pet": pet}, device="cpu", batchSize=2, onEvent=events.append)
        folder, started = run.folder, time.time()
        while not any(e["event"] == "progress" for e in events) and not run.finished and time.time() - started < 300:
            run.poll()
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertFalse(run.finished, f"the run ended early: {run.error}")
        run.cancel()
        self.assertIsInstance(run.error, Cancelled)
        self.assertFalse(os.path.exists(folder))
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)
        self.delayDisplay("Test passed")
