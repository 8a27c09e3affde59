import torch

from detr.loss.dense_assignment import centre_assignment
from detr.model.query_selection import cell_proposals


def _brute_force(cells, valid, boxes, radius):
    """Token by token, target by target, in plain Python: the independent reference."""
    pairs = {}
    for token, (cx, cy, cw, ch) in enumerate(cells.tolist()):
        if not valid[token]:
            continue
        best = None
        for index, (bx, by, bw, bh) in enumerate(boxes.tolist()):
            if abs(cx - bx) < min(bw / 2, radius * cw) and abs(cy - by) < min(bh / 2, radius * ch):
                if best is None or bw * bh < best[1]:
                    best = (index, bw * bh)
        if best is not None:
            pairs[token] = best[0]
    return pairs


def test_matches_a_brute_force_reference_on_random_boxes():
    generator = torch.Generator().manual_seed(0)
    mask = torch.zeros(1, 7, 9, dtype=torch.bool)
    mask[0, 5:, :] = True
    mask[0, :, 7:] = True
    cells, valid = cell_proposals(mask)
    for radius in (0.5, 1.5, 3.0):
        for _ in range(20):
            count = int(torch.randint(1, 7, (1,), generator=generator))
            centres = torch.rand(count, 2, generator=generator)
            sizes = torch.rand(count, 2, generator=generator) * 0.6 + 0.02
            boxes = torch.cat([centres, sizes], dim=1)
            tokens, owners = centre_assignment(cells[0], valid[0], boxes, radius)
            assert dict(zip(tokens.tolist(), owners.tolist())) == _brute_force(cells[0], valid[0], boxes, radius)
            assert len(set(tokens.tolist())) == len(tokens)


def test_nested_objects_go_to_the_smaller_and_radius_limits_large_ones():
    cells, valid = cell_proposals(torch.zeros(1, 10, 10, dtype=torch.bool))  # cells centred at 0.05, 0.15, ...
    large = [0.52, 0.52, 0.9, 0.9]  # 1.5 cells reach 0.37..0.67: rows and columns 4, 5, 6
    small = [0.6, 0.6, 0.12, 0.12]  # inside the large one: 0.54..0.66, rows and columns 5, 6
    tokens, owners = centre_assignment(cells[0], valid[0], torch.tensor([large, small]), radius=1.5)
    owner = dict(zip(tokens.tolist(), owners.tolist()))
    small_cells = {r * 10 + c for r in (5, 6) for c in (5, 6)}
    assert {t for t, o in owner.items() if o == 1} == small_cells
    assert {t for t, o in owner.items() if o == 0} == {r * 10 + c for r in (4, 5, 6) for c in (4, 5, 6)} - small_cells


def test_no_targets_or_only_padding_give_no_pairs():
    mask = torch.ones(1, 2, 2, dtype=torch.bool)
    cells, valid = cell_proposals(mask)
    tokens, owners = centre_assignment(cells[0], valid[0], torch.tensor([[0.5, 0.5, 1.0, 1.0]]), radius=1.5)
    assert len(tokens) == 0 and len(owners) == 0
    tokens, _ = centre_assignment(cells[0], torch.ones(4, dtype=torch.bool), torch.zeros(0, 4), radius=1.5)
    assert len(tokens) == 0
