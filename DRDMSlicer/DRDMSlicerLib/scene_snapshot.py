"""Emptying a scene back to how it was (Qt-free; MRML only): what a web session added goes when it ends.

:class:`SceneSnapshot` remembers the nodes and subject-hierarchy items present when taken (views, layout,
singletons); :meth:`SceneSnapshot.restore` removes every data node added since (volumes, segmentations,
transforms, tables, colour tables, their display and storage nodes, volume-rendering properties) and every
subject-hierarchy item added since (the result folders), so nothing of one person's data remains for the next.
"""

from __future__ import annotations

import slicer
import vtk

DATA_CLASSES = ("vtkMRMLDisplayableNode", "vtkMRMLDisplayNode", "vtkMRMLStorageNode", "vtkMRMLTableNode",
                "vtkMRMLColorNode", "vtkMRMLVolumePropertyNode", "vtkMRMLShaderPropertyNode")


def _node_ids(scene: slicer.vtkMRMLScene) -> set[str]:
    nodes = scene.GetNodes()
    return {nodes.GetItemAsObject(i).GetID() for i in range(nodes.GetNumberOfItems())}


def _item_ids(scene: slicer.vtkMRMLScene) -> set[int]:
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if sh is None:
        return set()
    items = vtk.vtkIdList()
    sh.GetItemChildren(sh.GetSceneItemID(), items, True)
    return {items.GetId(i) for i in range(items.GetNumberOfIds())}


class SceneSnapshot:
    """The nodes and subject-hierarchy items of ``scene`` now; :meth:`restore` removes data added since."""

    def __init__(self, scene: slicer.vtkMRMLScene) -> None:
        self.scene = scene
        self.node_ids = _node_ids(scene)
        self.item_ids = _item_ids(scene)

    def added_data_nodes(self) -> list:
        """Data nodes (and their display/storage nodes) added since the snapshot."""
        added = []
        for node_id in sorted(_node_ids(self.scene) - self.node_ids):
            node = self.scene.GetNodeByID(node_id)
            if node is not None and any(node.IsA(name) for name in DATA_CLASSES):
                added.append(node)
        return added

    def restore(self) -> int:
        """Remove the result folders and data nodes added since the snapshot; returns how many nodes went."""
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)
        if sh is not None:
            for item in sorted(_item_ids(self.scene) - self.item_ids, reverse=True):
                if sh.GetItemDataNode(item) is None and sh.GetItemParent(item) in self.item_ids | {sh.GetSceneItemID()}:
                    sh.RemoveItem(item, False, True)  # folders only here: data nodes go below, one by one
        removed = 0
        for node in self.added_data_nodes():
            if self.scene.IsNodePresent(node):
                self.scene.RemoveNode(node)
                removed += 1
        return removed
