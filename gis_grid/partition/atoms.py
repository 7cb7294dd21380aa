"""The atom graph: polygons that tile one region exactly (one snap-rounded noding of its
outline and the cutting lines), their measures and adjacency, and the label operations
every method uses — orphans, absorption into the neighbour of longest border, connectivity,
rebalancing by single boundary atoms, coverage union (see ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from shapely.geometry.base import BaseGeometry

from gis_grid.partition.frame import _Frame


@dataclass
class _Atoms:
    """Polygons (EPSG:4326) that tile one region exactly, with local metric measures and
    their adjacency: ``ei, ej, elen`` are the pairs of atoms sharing a border (i < j) and
    its length in metres. A shared corner is no adjacency, so a connected set of atoms
    unites to one Polygon."""

    faces: np.ndarray
    area: np.ndarray
    perimeter: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    ei: np.ndarray
    ej: np.ndarray
    elen: np.ndarray
    weight: np.ndarray | None = None  # households per atom
    point_atom: np.ndarray | None = None  # atom of each point of the region

    @property
    def n(self) -> int:
        return len(self.faces)

    def subset(self, idx: np.ndarray) -> _Atoms:
        """The atoms ``idx`` (renumbered 0..len-1) with the adjacency among them."""
        local = np.full(self.n, -1)
        local[idx] = np.arange(len(idx))
        inside = (local[self.ei] >= 0) & (local[self.ej] >= 0)
        return _Atoms(self.faces[idx], self.area[idx], self.perimeter[idx], self.cx[idx],
                      self.cy[idx], local[self.ei[inside]], local[self.ej[inside]],
                      self.elen[inside],
                      None if self.weight is None else self.weight[idx])


def _arrange(region: BaseGeometry, lines: Sequence[BaseGeometry], grid: float) -> np.ndarray:
    """The faces of ``region`` cut by ``lines``: one snap-rounded noding of its outline
    and the lines, polygonized, keeping the faces inside the region."""
    edges = shapely.union_all(
        np.array([shapely.boundary(region), *lines], dtype=object), grid_size=grid)
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(edges)))
    if len(faces) == 0:
        return np.array([region], dtype=object)
    xy = shapely.get_coordinates(shapely.point_on_surface(faces))
    shapely.prepare(region)
    return faces[shapely.contains_xy(region, xy[:, 0], xy[:, 1])]


def _atoms(faces: np.ndarray, frame: _Frame) -> _Atoms:
    """Measures and adjacency of faces that share their edges exactly (faces of one noded
    arrangement): each segment is keyed by its snapped end points, and a key met twice
    is a border between two faces."""
    n = len(faces)
    rings, ring_face = shapely.get_rings(faces, return_index=True)
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    same = ring_of[1:] == ring_of[:-1]
    a, b = coords[:-1][same], coords[1:][same]
    seg_face = ring_face[ring_of[:-1][same]]
    seg_len = np.hypot((b[:, 0] - a[:, 0]) * frame.kx, (b[:, 1] - a[:, 1]) * frame.ky)
    perimeter = np.bincount(seg_face, seg_len, minlength=n)
    qa = np.rint(a / frame.grid).astype(np.int64)
    qb = np.rint(b / frame.grid).astype(np.int64)
    swap = (qa[:, 0] > qb[:, 0]) | ((qa[:, 0] == qb[:, 0]) & (qa[:, 1] > qb[:, 1]))
    lo = np.where(swap[:, None], qb, qa)
    hi = np.where(swap[:, None], qa, qb)
    order = np.lexsort((hi[:, 1], hi[:, 0], lo[:, 1], lo[:, 0]))
    key = np.column_stack([lo, hi])[order]
    dup = np.all(key[1:] == key[:-1], axis=1)
    first, second = order[:-1][dup], order[1:][dup]
    fi, fj = seg_face[first], seg_face[second]
    ok = fi != fj
    fi, fj, ln = fi[ok], fj[ok], seg_len[first][ok]
    if len(fi):
        pair = np.minimum(fi, fj) * n + np.maximum(fi, fj)
        upair, inv = np.unique(pair, return_inverse=True)
        elen = np.bincount(inv.ravel(), ln)
        ei, ej = upair // n, upair % n
    else:
        ei = ej = np.zeros(0, dtype=np.int64)
        elen = np.zeros(0)
    centre = frame.xy(shapely.get_coordinates(shapely.centroid(faces)))
    return _Atoms(faces=faces, area=shapely.area(faces) * frame.kx * frame.ky,
                  perimeter=perimeter, cx=centre[:, 0], cy=centre[:, 1],
                  ei=ei.astype(np.int64), ej=ej.astype(np.int64), elen=elen)


def _components(n: int, ei: np.ndarray, ej: np.ndarray, keep: np.ndarray) -> np.ndarray:
    g = sparse.coo_matrix((np.ones(int(keep.sum())), (ei[keep], ej[keep])), shape=(n, n))
    return connected_components(g, directed=False)[1]


def _orphans(atoms: _Atoms, labels: np.ndarray, anchors: dict[int, int] | None = None
             ) -> np.ndarray:
    """Atoms cut off from their label's main piece — the piece holding the label's anchor
    atom if given, else its largest piece. Unlabelled atoms (-1) are orphans too."""
    n = atoms.n
    comp = _components(n, atoms.ei, atoms.ej, labels[atoms.ei] == labels[atoms.ej])
    ncomp = comp.max() + 1 if n else 0
    comp_area = np.bincount(comp, atoms.area, minlength=ncomp)
    comp_label = np.full(ncomp, -1)
    comp_label[comp] = labels
    order = np.lexsort((-comp_area, comp_label))  # largest piece first within each label
    first = np.ones(len(order), dtype=bool)
    first[1:] = comp_label[order][1:] != comp_label[order][:-1]
    main = np.zeros(ncomp, dtype=bool)
    main[order[first]] = True
    for label, atom in (anchors or {}).items():
        main[comp_label == label] = False
        main[comp[atom]] = True
    main[comp_label < 0] = False
    return ~main[comp]


def _absorb(atoms: _Atoms, labels: np.ndarray, pending: np.ndarray) -> np.ndarray:
    """Give each connected group of pending atoms the label of the settled neighbour it
    shares the longest border with, round after round. The group borders that neighbour,
    so every label stays one piece."""
    labels = labels.copy()
    pending = pending.copy()
    n = atoms.n
    while pending.any():
        comp = _components(n, atoms.ei, atoms.ej, pending[atoms.ei] & pending[atoms.ej])
        cross = pending[atoms.ei] != pending[atoms.ej]
        if not cross.any():
            break
        ei, ej = atoms.ei[cross], atoms.ej[cross]
        p_end = np.where(pending[ei], ei, ej)
        s_end = np.where(pending[ei], ej, ei)
        m = sparse.coo_matrix((atoms.elen[cross], (comp[p_end], labels[s_end])),
                              shape=(comp.max() + 1, labels.max() + 1)).tocsr()
        m.sum_duplicates()
        has = np.diff(m.indptr) > 0
        best = np.asarray(m.argmax(axis=1)).ravel()
        take = pending & has[comp]
        labels[take] = best[comp[take]]
        pending &= ~take
    return labels


def _connected(mask: np.ndarray, li: np.ndarray, lj: np.ndarray) -> bool:
    """Whether the atoms in ``mask`` form one piece."""
    count = int(mask.sum())
    if count <= 1:
        return count == 1
    sel = mask[li] & mask[lj]
    n = len(mask)
    g = sparse.coo_matrix((np.ones(int(sel.sum())), (li[sel], lj[sel])), shape=(n, n))
    return connected_components(g, directed=False)[0] - (n - count) == 1


def _rebalance(atoms: _Atoms, labels: np.ndarray, w: np.ndarray, target: np.ndarray,
               lo: np.ndarray, hi: np.ndarray, protected: np.ndarray | None = None,
               max_moves: int = 400) -> np.ndarray:
    """Move single boundary atoms between neighbouring labels — steepest descent on the
    squared relative deviation from ``target`` — until every label is within
    ``[lo, hi]``. A move must leave its label in one piece and not take a protected atom
    (an outlet's own)."""
    labels = labels.copy()
    k = len(target)
    load = np.bincount(labels, w, minlength=k)
    both_i = np.concatenate([atoms.ei, atoms.ej])
    both_j = np.concatenate([atoms.ej, atoms.ei])
    blen = np.concatenate([atoms.elen, atoms.elen])
    t2 = np.maximum(target, 1e-9) ** 2
    for _ in range(max_moves):
        if np.all((load >= lo - 1e-9) & (load <= hi + 1e-9)):
            break
        a, b = labels[both_i], labels[both_j]
        cand = (a != b) & (w[both_i] > 0)
        if protected is not None:
            cand &= ~protected[both_i]
        i, la, lb = both_i[cand], a[cand], b[cand]
        wi = w[i]
        gain = (((load[la] - wi - target[la]) ** 2 - (load[la] - target[la]) ** 2) / t2[la]
                + ((load[lb] + wi - target[lb]) ** 2 - (load[lb] - target[lb]) ** 2) / t2[lb])
        good = np.flatnonzero(gain < -1e-12)
        if len(good) == 0:
            break
        # Among equal gains prefer atoms sharing more of their outline with the new label.
        share = blen[cand][good] / np.maximum(atoms.perimeter[i[good]], 1e-12)
        good = good[np.lexsort((-share, gain[good]))]
        moved = False
        tried: set[int] = set()
        for t in good[:64]:
            atom = int(i[t])
            if atom in tried:
                continue
            tried.add(atom)
            region = np.flatnonzero(labels == la[t])
            if len(region) <= 1:
                continue
            sub = atoms.subset(region)
            mask = np.ones(len(region), dtype=bool)
            mask[np.searchsorted(region, atom)] = False
            if _connected(mask, sub.ei, sub.ej):
                labels[atom] = lb[t]
                load[la[t]] -= wi[t]
                load[lb[t]] += wi[t]
                moved = True
                break
        if not moved:
            break
    return labels


def _union(faces: np.ndarray) -> BaseGeometry:
    """The coverage union of faces that share their edges exactly."""
    return faces[0] if len(faces) == 1 else shapely.coverage_union_all(faces)
