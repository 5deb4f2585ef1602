// Joining batches, as the group committer does.
#include "store/write_batch.hpp"

#include <iterator>

namespace sluice::store {

void WriteBatch::append(WriteBatch&& other) {
  operations_.insert(operations_.end(), std::make_move_iterator(other.operations_.begin()),
                     std::make_move_iterator(other.operations_.end()));
  other.operations_.clear();
}

}  // namespace sluice::store
