"""The joint layout of matching and denoising queries: who may attend whom, and the split back."""

import torch

from detr.model.joint_queries import join_queries
from detr.model.queries import DecoderQueries


def _queries(entries: int, count: int, start: float) -> DecoderQueries:
    content = start + torch.arange(entries * count, dtype=torch.float32).view(entries, count, 1).expand(-1, -1, 2)
    return DecoderQueries(content, content[..., :1].expand(-1, -1, 4))


def test_each_set_sees_itself_and_no_pad_and_the_split_gives_the_entries_back():
    batch, groups, per_group, dn_groups, dn_count = 2, 2, 3, 2, 2
    main, dn = _queries(batch * groups, per_group, 0.0), _queries(batch * dn_groups, dn_count, 100.0)
    padding = torch.zeros(batch * dn_groups, dn_count, dtype=torch.bool)
    padding[2:, 1] = True  # image 1 has one target: its groups' second query pads
    joint = join_queries(main, groups, dn, dn_groups, padding)
    length = groups * per_group + dn_groups * dn_count
    assert joint.queries.content.shape == (batch, length, 2) and joint.self_mask.shape == (batch, 1, length, length)
    visible = joint.self_mask[:, 0] == 0
    sets = [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]
    for b in range(batch):
        for i in range(length):
            for j in range(length):
                pad = b == 1 and j in (7, 9)
                assert visible[b, i, j] == (sets[i] == sets[j] and (not pad or i == j)), (b, i, j)
    main_back, dn_back = joint.split(joint.queries.content[None])
    torch.testing.assert_close(main_back[0], main.content.reshape(batch, groups * per_group, 2))
    torch.testing.assert_close(dn_back[0], dn.content)
