// Rule 1 (device tags): tags are empty, distinct types that never derive from one
// another, and the traits keep "accessible from the host" apart from "assignable".
#include <type_traits>

#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

static_assert(std::is_same_v<G, Device<GPU, 0>>, "Device<GPU> is GPU 0");
static_assert(std::is_empty_v<C> && std::is_empty_v<G> && std::is_empty_v<G1>);
static_assert(!std::is_same_v<C, G> && !std::is_same_v<G, G1>);

// No inheritance between tags: inheritance would be an implicit fallback path.
static_assert(!std::is_base_of_v<C, G> && !std::is_base_of_v<G, C>);
static_assert(!std::is_base_of_v<G, G1> && !std::is_base_of_v<G1, G>);
static_assert(!std::is_base_of_v<CPU, GPU> && !std::is_base_of_v<GPU, CPU>);
static_assert(!std::is_convertible_v<G, C> && !std::is_convertible_v<C, G>);

static_assert(is_device_v<C> && is_device_v<G> && is_device_v<G1> && !is_device_v<CPU>);
static_assert(AnyDevice<C> && HostDevice<C> && !OpenCLDevice<C>);
static_assert(AnyDevice<G1> && OpenCLDevice<G1> && !HostDevice<G1>);

static_assert(host_accessible_v<C> && !host_accessible_v<G> && !host_accessible_v<G1>);
static_assert(assignable_v<C, C> && assignable_v<G1, G1>);
static_assert(!assignable_v<C, G> && !assignable_v<G, C> && !assignable_v<G, G1>);

// The device of a tensor is its type.
static_assert(std::is_same_v<Tensor<float, C>::device_type, C>);
static_assert(std::is_same_v<Tensor<float, G1>::device_type, G1>);
static_assert(!std::is_same_v<Tensor<float, C>, Tensor<float, G>>);

// Tensors of different devices are not convertible into each other (the converting
// constructor exists only to carry the static_assert, so is_convertible must not be
// asked here: it would instantiate it). What must hold is the explicit route.
static_assert(std::is_same_v<decltype(to<G>(std::declval<const Tensor<float, C>&>())),
                             Tensor<float, G>>);
static_assert(std::is_same_v<decltype(to<C>(std::declval<const Tensor<float, G1>&>())),
                             Tensor<float, C>>);
