// Uses an installed locus through find_package(locus CONFIG REQUIRED COMPONENTS mpi): two
// ranks sum their rank + 1 with the component's all-reduce.
#include <cstdlib>
#include <iostream>
#include <span>

#include <locus/locus.hpp>
#include <locus/parallel/mpi.hpp>

int main() {
  locus::mpi::Session session;
  float value[1] = {static_cast<float>(session.rank() + 1)};
  locus::mpi::allreduce_sum(session, std::span<float>(value), "the consumer's sum");
  if (session.rank() == 0)
    std::cout << "rank 0 of " << session.size() << ": sum " << value[0] << '\n';
  return EXIT_SUCCESS;
}
